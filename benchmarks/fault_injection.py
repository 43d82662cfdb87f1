"""Fault injection: kill, corrupt, truncate, race and starve a run, then check the rerun against an
uninterrupted one.

    python benchmarks/fault_injection.py                 # the long version: a table of every fault kind
    python benchmarks/fault_injection.py --trials 2      # fewer trials per kind
    python benchmarks/fault_injection.py --short         # one trial per kind (what CI runs, via tests/)

Each trial works on its own copy of a small run (2 models, 60 steps, 4 analyses), through the CLI
in subprocesses, as a user would. After the fault, the rerun is what the docs say to do (rerun the
same command; ``mechrare train`` repairs checkpoints, ``mechrare analyze`` recomputes damaged parts),
and the whole run is compared with the uninterrupted reference: every checkpoint record (sha256 of
every file, eval metrics), every resume state, the manifest's models, metrics.nc and every analysis
dataset (their content checksums). Outcomes:

* ``resumed identical``: the rerun ended equal to the reference;
* ``detected, repaired``: ``mechrare ls --verify`` (or the command that read it) named the damaged
  file in one line, and the reruns ended equal to the reference;
* ``detected, refused``: named in one line; the rerun refuses until the user restores the file
  (a manifest, the only file mechrare cannot rebuild);
* ``harmless``: nothing was named and everything is still equal (the bytes hit padding, not a value);
* ``refused``: a second writer was refused in one line (the lock);
* ``SILENTLY WRONG``: the run differs from the reference and nothing said so;
* ``LOST``: the rerun did not get back to the reference;
* ``TRACEBACK``: a raw traceback or an internal error (exit 3) reached the user.

The last three must be 0.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

TRAIN = ["--set", 'ladder.models=["d8-l1","d16-l2"]', "--set", "train.steps=60", "--set", "checkpoints.every=10",
         "--set", "ladder.interventions=[]", "--set", "train.jobs=1", "--no-progress"]
ANALYSES = "probes,interference,neurons,retention"
OUTCOMES = ["resumed identical", "detected, repaired", "detected, refused", "harmless", "refused",
            "SILENTLY WRONG", "LOST", "TRACEBACK"]
BAD = {"SILENTLY WRONG", "LOST", "TRACEBACK"}


def mechrare(*args, timeout=900, preexec_fn=None, wait=True):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "mechrare", *map(str, args)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=preexec_fn)
    if not wait:
        return proc
    out, err = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def train(out, **kw):
    return mechrare("train", "tiny", "--out", out, *TRAIN, **kw)


def analyze(out, **kw):
    return mechrare("analyze", out, "--only", os.environ.get("MECHRARE_FAULT_ANALYSES", ANALYSES), "--no-progress", **kw)


def traceback_in(result) -> bool:
    return "Traceback" in (result.stderr or "") or result.returncode == 3


# -- what a run holds ------------------------------------------------------------------------------
def snapshot(run: Path) -> dict[str, object]:
    """Everything a run's results are made of, as comparable values."""
    from mechrare.checkpoints.datasets import content_sha256, open_dataset

    snap: dict[str, object] = {}
    manifest = json.loads((run / "manifest.json").read_text())
    snap["manifest"] = {k: manifest.get(k) for k in ("config", "tasks", "models", "seeds", "checkpoint_steps")}
    for record in sorted(run.glob("models/*/seed_*/step_*/mechrare.json")):
        snap[str(record.parent.relative_to(run))] = json.loads(record.read_text())
    for state in sorted(run.glob("models/*/seed_*/resume/state.json")):
        snap[str(state.relative_to(run))] = json.loads(state.read_text())["tensors_sha256"]
    for nc in sorted([run / "metrics.nc", *run.glob("analyses/*.nc")]):
        if nc.is_file():
            snap[str(nc.relative_to(run))] = content_sha256(open_dataset(nc, verify=False))
    return snap


def differences(run: Path, ref: Path, keys=None) -> list[str]:
    try:
        a, b = snapshot(run), snapshot(ref)
    except Exception as exc:  # an unreadable run is a difference, not a crash of the harness
        return [f"unreadable: {type(exc).__name__}: {exc}"]
    keys = keys or (lambda k: True)
    return [k for k in sorted(set(a) | set(b)) if keys(k) and a.get(k) != b.get(k)]


def training_keys(key: str) -> bool:
    return not key.startswith("analyses/")


def files_of(run: Path) -> list[Path]:
    """The files a fault may hit: everything mechrare reads back (not the lock, the report or saved SAEs)."""
    skip = (".mechrare.lock",)
    return sorted(p for p in run.rglob("*") if p.is_file() and p.name not in skip
                  and "report" not in p.relative_to(run).parts and "sae" not in p.relative_to(run).parts)


def kind_of(path: Path, run: Path) -> str:
    rel = path.relative_to(run)
    if rel.parts[0] == "models":
        if "resume" in rel.parts:
            return "resume state"
        return {"model.safetensors": "checkpoint weights", "mechrare.json": "checkpoint record"}.get(path.name, "checkpoint config/tokenizer")
    if rel.suffix == ".npz":
        return "analysis part"
    return {".nc": "dataset", ".json": "manifest"}.get(rel.suffix, "other")


def pick_file(run: Path, rng: random.Random) -> Path:
    """A file to damage: a kind of file first (all kinds equally often), then a file of that kind."""
    by_kind = defaultdict(list)
    for p in files_of(run):
        by_kind[kind_of(p, run)].append(p)
    return rng.choice(by_kind[rng.choice(sorted(by_kind))])


def du(folder: Path) -> int:
    """Bytes the folder takes on a file system with 4 KiB pages (tmpfs), folders included."""
    return sum(-(-p.stat().st_size // 4096) * 4096 if p.is_file() else 4096 for p in folder.rglob("*"))


# -- the trials -------------------------------------------------------------------------------------
class Harness:
    def __init__(self, work: Path, seed: int):
        self.work = work
        self.rng = random.Random(seed)
        self.ref = work / "ref"
        self.n = 0
        t0 = time.perf_counter()
        assert train(self.ref).returncode == 0
        self.t_train = time.perf_counter() - t0
        t0 = time.perf_counter()
        assert analyze(self.ref).returncode == 0
        self.t_analyze = time.perf_counter() - t0
        self.can_mount = _can_mount(work)

    def fresh(self, with_analyses=True) -> Path:
        self.n += 1
        out = self.work / f"t{self.n}"
        shutil.copytree(self.ref, out, ignore=None if with_analyses else shutil.ignore_patterns("analyses"))
        return out

    def kill(self, command, out: Path, delay: float, keys=None) -> tuple[str, str]:
        """Start ``command`` on ``out``, SIGKILL it after ``delay`` s, rerun it and compare with the reference."""
        proc = command(out, wait=False)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        rerun = command(out)
        if traceback_in(rerun) or rerun.returncode != 0:
            return ("TRACEBACK" if traceback_in(rerun) else "LOST"), f"killed at {delay:.1f} s; rerun exit {rerun.returncode}"
        diff = differences(out, self.ref, keys)
        return ("LOST" if diff else "resumed identical"), f"killed at {delay:.1f} s" + (f"; differs: {diff[:3]}" if diff else "")

    def kill_train(self) -> tuple[str, str]:
        self.n += 1
        # the first ~35% is start-up (imports), where a kill is dull
        return self.kill(train, self.work / f"t{self.n}", self.rng.uniform(0.35, 1.0) * self.t_train, training_keys)

    def kill_analyze(self) -> tuple[str, str]:
        out = self.fresh(with_analyses=False)
        return self.kill(analyze, out, self.rng.uniform(0.15, 1.0) * self.t_analyze)

    def damage(self, how: str) -> tuple[str, str]:
        out = self.fresh()
        target = pick_file(out, self.rng)
        data = bytearray(target.read_bytes())
        if how == "corrupt":
            for _ in range(self.rng.randint(1, 4)):
                if data:
                    data[self.rng.randrange(len(data))] ^= 1 << self.rng.randrange(8)
            what = "bytes flipped"
        else:
            data = data[: self.rng.randrange(len(data))] if data else data
            what = f"truncated to {len(data)} bytes"
        target.write_bytes(bytes(data))
        where = f"{kind_of(target, out)} {target.relative_to(out)} ({what})"
        verify = mechrare("ls", out, "--verify", "--no-progress")
        if traceback_in(verify):
            return "TRACEBACK", f"{where}: ls --verify: {verify.stderr.strip()[-200:]}"
        said = verify.stdout + verify.stderr
        parent = target.relative_to(out).parent
        named = verify.returncode != 0 and (target.name in said or (str(parent) != "." and str(parent) in said))
        steps = [train(out), analyze(out)]
        if any(traceback_in(r) for r in steps):
            return "TRACEBACK", f"{where}: {[r.stderr.strip()[-200:] for r in steps]}"
        diff = differences(out, self.ref)
        from mechrare.checkpoints.verify import verify_run
        from mechrare.errors import MechrareError

        try:
            clean = not verify_run(out)[0]
        except MechrareError:  # a manifest the user has to restore
            clean = False
        if all(r.returncode == 0 for r in steps) and not diff and clean:
            return ("detected, repaired" if named else "harmless"), where
        if named and not all(r.returncode == 0 for r in steps):
            refusals = [r.stderr.strip() for r in steps if r.returncode]
            one_line = all(len(s.splitlines()) == 1 and target.name in s for s in refusals)
            if one_line:
                return "detected, refused", f"{where}: {refusals[0][:160]}"
        return ("LOST" if named else "SILENTLY WRONG"), f"{where}; differs: {diff[:3]}; exits {[r.returncode for r in steps]}"

    def two_writers(self) -> tuple[str, str]:
        """Two `train` on a new folder, or two `analyze` on a trained one, started together."""
        if self.rng.random() < 0.5:
            self.n += 1
            out, command, keys = self.work / f"t{self.n}", train, training_keys
        else:
            out, command, keys = self.fresh(with_analyses=False), analyze, None
        procs = [command(out, wait=False), command(out, wait=False)]
        results = [p.communicate(timeout=900) + (p.returncode,) for p in procs]
        codes = sorted(r[2] for r in results)
        errs = [r[1].strip() for r in results if r[2]]
        if any("Traceback" in e for e in errs) or 3 in codes:
            return "TRACEBACK", f"exits {codes}: {errs}"
        refused = codes == [0, 2] and len(errs[0].splitlines()) == 1 and "in use by pid" in errs[0]
        rerun = command(out)
        diff = differences(out, self.ref, keys)
        what = f"{command.__name__} x 2: exits {codes}"
        if rerun.returncode or diff:
            return "LOST", f"{what}; rerun {rerun.returncode}; differs {diff[:3]}"
        return ("refused" if refused else "resumed identical"), what

    def disk_full(self, during: str = "train") -> tuple[str, str]:
        """A disk that fills up during ``during`` (train, or analyze of a trained run), then has room."""
        self.n += 1
        out_root = self.work / f"t{self.n}"
        out_root.mkdir()
        trained = du(self.ref) - du(self.ref / "analyses")
        low, high = (0.05 * trained, 1.1 * trained) if during == "train" else (trained, trained + 1.1 * du(self.ref / "analyses"))
        size = int(self.rng.uniform(low, high) / 1024) + 128  # KiB
        if self.can_mount:
            subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}k", "tmpfs", str(out_root)], check=True)
            limit = None
        else:  # no mount: a per-file size limit (RLIMIT_FSIZE) fails writes with EFBIG instead of ENOSPC
            import resource

            limit = lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (size * 1024, size * 1024))  # noqa: E731
        out = out_root / "run"
        command, keys = (train, training_keys) if during == "train" else (analyze, None)
        try:
            if during != "train":
                shutil.copytree(self.ref, out, ignore=shutil.ignore_patterns("analyses"))
            first = command(out, preexec_fn=limit)
            if traceback_in(first):
                return "TRACEBACK", f"{size} KiB: {first.stderr.strip()[-300:]}"
            one_line = first.returncode == 0 or (first.returncode == 2 and len(first.stderr.strip().splitlines()) == 1)
            if self.can_mount:
                subprocess.run(["mount", "-o", "remount,size=64m", str(out_root)], check=True)
            rerun = command(out)
            diff = differences(out, self.ref, keys) if rerun.returncode == 0 else ["rerun failed"]
            detail = f"{size} KiB {'tmpfs' if self.can_mount else 'RLIMIT_FSIZE'}: first exit {first.returncode}"
            if diff or not one_line:
                return "LOST", f"{detail}; {first.stderr.strip()[-200:]}; differs {diff[:3]}"
            return "resumed identical", detail + (f" ({first.stderr.strip()[:120]})" if first.returncode else "")
        finally:
            if self.can_mount:
                subprocess.run(["umount", str(out_root)], check=False)


def _can_mount(work: Path) -> bool:
    probe = work / "mount-probe"
    probe.mkdir(exist_ok=True)
    ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(probe)], capture_output=True).returncode == 0
    if ok:
        subprocess.run(["umount", str(probe)], check=False)
    return ok


KINDS = {
    "kill during train": Harness.kill_train,
    "kill during analyze": Harness.kill_analyze,
    "corrupt bytes": lambda h: h.damage("corrupt"),
    "truncate a file": lambda h: h.damage("truncate"),
    "two writers": Harness.two_writers,
    "disk full during train": Harness.disk_full,
    "disk full during analyze": lambda h: h.disk_full("analyze"),
}


def run_trials(trials: int, seed: int = 0, work: Path | None = None, echo=print) -> dict[str, list[tuple[str, str]]]:
    owned = work is None
    work = Path(tempfile.mkdtemp(prefix="mechrare-faults-")) if owned else work
    try:
        harness = Harness(work, seed)
        echo(f"reference: train {harness.t_train:.0f} s, analyze {harness.t_analyze:.0f} s; "
             f"disk-full faults {'on tmpfs' if harness.can_mount else 'by RLIMIT_FSIZE'}")
        results: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for kind, trial in KINDS.items():
            for _ in range(trials):
                outcome, detail = trial(harness)
                results[kind].append((outcome, detail))
                echo(f"  {kind}: {outcome}: {detail}")
        return results
    finally:
        if owned:
            shutil.rmtree(work, ignore_errors=True)


def table(results: dict[str, list[tuple[str, str]]]) -> str:
    used = [o for o in OUTCOMES if any(o == r[0] for rs in results.values() for r in rs) or o in BAD]
    lines = ["| fault | tried | " + " | ".join(used) + " |", "|---|---:|" + "---:|" * len(used)]
    for kind, rs in results.items():
        counts = Counter(o for o, _ in rs)
        lines.append(f"| {kind} | {len(rs)} | " + " | ".join(str(counts.get(o, 0)) for o in used) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=8, help="trials per fault kind [8]")
    parser.add_argument("--short", action="store_true", help="one trial per kind")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    t0 = time.perf_counter()
    results = run_trials(1 if args.short else args.trials, args.seed)
    print()
    print(table(results))
    bad = sum(o in BAD for rs in results.values() for o, _ in rs)
    print(f"\nsilently wrong, lost or traceback: {bad}  ({time.perf_counter() - t0:.0f} s)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
