"""`mechrare ls --verify` (verify_run) with the checkpoints hashed one at a time vs side by side in one
thread per usable core (mechrare.checkpoints.verify.check_checkpoints). A run of one model with a
checkpoint at every step is trained first; the page cache is warm (every file read once before the
timing), so this measures the hashing, not the disk. Alternating rounds, the median. Run it alone.

    python benchmarks/verify_threads.py --model 20M --steps 20
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="20M")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    import mechrare.checkpoints.verify as verify
    from mechrare.config import load_config
    from mechrare.training import train_run
    from mechrare.workers import usable_cores

    out = Path(tempfile.mkdtemp(prefix="verify-")) / "run"
    overrides = [f'ladder.models=["{args.model}"]', "ladder.interventions=[]", f"train.steps={args.steps}",
                 "checkpoints.every=1", "checkpoints.log_spaced=false"]
    train_run(load_config("tiny", overrides)[1], out, name="tiny", progress=False)
    size = sum(p.stat().st_size for p in (out / "models").rglob("*") if p.is_file())
    cores = usable_cores()
    verify.verify_run(out)  # the page cache warm
    times: dict[str, list[float]] = {"one at a time": [], f"side by side ({cores} threads)": []}
    for _ in range(args.rounds):
        for name, n in zip(times, (1, cores)):
            verify.usable_cores = lambda n=n: n
            t0 = time.perf_counter()
            problems, counts = verify.verify_run(out)
            times[name].append(time.perf_counter() - t0)
            assert not problems
    (serial, parallel) = (statistics.median(v) for v in times.values())
    print(f"{args.model}, {counts['checkpoints']} checkpoints, {size / 2**20:.0f} MB of checkpoint files, warm page cache")
    print(" | ".join(f"{k}: {statistics.median(v):.3f} s" for k, v in times.items()) + f" | ratio {parallel / serial:.2f}")


if __name__ == "__main__":
    main()
