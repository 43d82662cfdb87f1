"""Bad inputs a user can give or meet, each through the CLI in a subprocess: every one must end with
one line on stderr (``mechrare: error: ...``), a non-zero exit, no traceback, and nothing written
(no run folder for a refused config; for a damaged run folder, every file it had byte-identical: an
analysis may have kept the parts of the good checkpoints it reached first, for the rerun).

    python benchmarks/bad_inputs.py            # the table, and every case that failed
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

SMALL = ["--set", 'ladder.models=["d8-l1"]', "--set", "train.steps=10", "--set", "checkpoints.every=5",
         "--set", "ladder.interventions=[]", "--no-progress"]


def cli(*args, timeout=300):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    try:
        return subprocess.run([sys.executable, "-m", "mechrare", *map(str, args)], env=env, capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(args, 124, "", "timed out")


def tree(folder: Path) -> dict[str, bytes] | None:
    if not folder.exists():
        return None
    if folder.is_file():
        return {"": folder.read_bytes()}
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != ".mechrare.lock"}


class Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def edit_json(path: Path, change, reseal=False):
    from mechrare.atomic import sealed

    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(sealed(data) if reseal else data))


def config_cases(tmp: Path):
    """(name, argv): a `train` that must be refused before anything is written to ``{out}``."""
    files = {
        "empty config": "",
        "config without [ladder]": "[mixture]\n[[mixture.tasks]]\nfamily = \"facts\"\ncomplexity = 8\nfrequency = 0.3\n",
        "config without tasks": "[ladder]\nmodels = [\"d8-l1\"]\n",
        "invalid TOML": "[ladder\nmodels = 3\n",
        "unknown key": "[ladder]\nmodels = [\"d8-l1\"]\nbanana = 1\n",
    }
    for name, text in files.items():
        path = tmp / f"{name.replace(' ', '_')}.toml"
        path.write_text(text)
        yield name, ["train", path, "--out", "{out}", "--no-progress"]
    (tmp / "latin1.toml").write_bytes("# caf\xe9\n".encode("latin-1"))
    yield "non-UTF-8 config", ["train", tmp / "latin1.toml", "--out", "{out}"]
    yield "config path is a folder", ["train", tmp, "--out", "{out}"]
    yield "missing config file", ["train", tmp / "nope.toml", "--out", "{out}"]
    yield "unknown preset", ["train", "no_such_preset", "--out", "{out}"]
    sets = {
        "--set unknown key": "train.banana=1", "--set wrong type": 'train.steps="x"', "--set under a value": "train.steps.x=5",
        "--set without =": "train.steps", "lr inf": "train.lr=inf", "lr nan": "train.lr=nan", "lr negative": "train.lr=-1",
        "task frequency inf": "mixture.tasks.0.frequency=inf", "task frequency 0": "mixture.tasks.0.frequency=0",
        "background frequency nan": "mixture.background.frequency=nan", "seed 2**63": f"seed={2**63}", "seed -1": "seed=-1",
        "seeds 0": "ladder.seeds=0", "seeds repeated": "ladder.seeds=[1,1]", "unknown model size": 'ladder.models=["d7-l9"]',
        "model named ..": 'ladder.models=[{name="..",d_model=8,n_layers=1,n_heads=1}]',
        "model named a/b": 'ladder.models=[{name="a/b",d_model=8,n_layers=1,n_heads=1}]',
        "heads do not divide d_model": 'ladder.models=[{name="x",d_model=10,n_layers=1,n_heads=3}]',
        "zero layers": 'ladder.models=[{name="x",d_model=8,n_layers=0,n_heads=1}]',
        "model too large for memory": 'ladder.models=[{name="x",d_model=8192,n_layers=64,n_heads=64}]',
        "batch size 0": "train.batch_size=0", "batch size too large for memory": "train.batch_size=100000000",
        "sequence length 2": "mixture.sequence_length=2", "sequence length huge": "mixture.sequence_length=100000000",
        "vocabulary 1": "mixture.background.vocab_size=1", "vocabulary huge": "mixture.background.vocab_size=1000000000",
        "complexity 0": "mixture.tasks.0.complexity=0", "complexity huge": "mixture.tasks.0.complexity=100000000",
        "unknown task family": 'mixture.tasks.0.family="nope"', "duplicate task": 'mixture.tasks.1={family="facts",complexity=8,frequency=0.1}',
        "upsample unknown task": "mixture.upsample.nope=2", "upsample factor 0": "mixture.upsample.facts:8=0",
        "device banana": 'train.device="banana"', "device cuda:7": 'train.device="cuda:7"', "precision fp8": 'train.precision="fp8"',
        "steps 0": "train.steps=0", "checkpoint every 0": "checkpoints.every=0",
        "intervention on an unknown model": 'ladder.interventions=[{model="d7-l9",upsample={"facts:8"=2.0}}]',
        "sweep of an unknown task": 'ladder.sweep={task="nope",factors=[2.0]}',
    }
    for name, override in sets.items():
        argv = ["train", "tiny", "--out", "{out}", *SMALL, "--set", override]
        if name == "--set under a value":  # SMALL sets train.steps, and the last --set wins; keep this one alone
            argv = ["train", "tiny", "--out", "{out}", "--set", override]
        yield name, argv


def out_cases(tmp: Path):
    """(name, argv, path that must stay as it was)."""
    (tmp / "a_file").write_text("x")
    yield "--out at a file", ["train", "tiny", "--out", tmp / "a_file", *SMALL], tmp / "a_file"
    yield "--out under a file", ["train", "tiny", "--out", tmp / "a_file" / "run", *SMALL], tmp / "a_file"
    foreign = tmp / "foreign"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("mine")
    yield "--out a foreign folder", ["train", "tiny", "--out", foreign, *SMALL], foreign
    readonly = tmp / "readonly"
    readonly.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(readonly)], capture_output=True).returncode == 0:
        yield "--out on a read-only mount", ["train", "tiny", "--out", readonly / "run", *SMALL], readonly


def run_cases(template: Path):
    """(name, setup(run), argv with {run}): a damaged or hostile run folder."""
    step5 = "models/d8-l1/seed_0/step_5"
    unfinished = lambda run: edit_json(run / "manifest.json", lambda d: d["models"]["d8-l1"].update(status="training", seeds_done=[]), reseal=True)  # noqa: E731
    yield "analyze a missing folder", None, ["analyze", "{run}/nope", "--no-progress"]
    yield "analyze a folder that is not a run", lambda r: (r / "manifest.json").unlink(), ["analyze", "{run}", "--no-progress"]
    yield "analyze --only unknown", None, ["analyze", "{run}", "--only", "nope", "--no-progress"]
    yield "analyze --models unknown", None, ["analyze", "{run}", "--models", "nope", "--no-progress"]
    yield "analyze --steps none on disk", None, ["analyze", "{run}", "--only", "probes", "--steps", "99999", "--no-progress"]
    yield "analyze --steps not numbers", None, ["analyze", "{run}", "--steps", "a,b", "--no-progress"]
    yield "analyze --set unknown setting", None, ["analyze", "{run}", "--set", "probes.nope=1", "--no-progress"]
    yield "manifest invalid JSON", lambda r: (r / "manifest.json").write_text("{"), ["analyze", "{run}", "--no-progress"]
    yield "manifest not UTF-8", lambda r: (r / "manifest.json").write_bytes(b"\xff\xfe"), ["ls", "{run}"]
    yield "manifest missing keys", lambda r: edit_json(r / "manifest.json", lambda d: d.pop("tasks"), reseal=True), ["analyze", "{run}", "--no-progress"]
    yield "manifest edited (checksum)", lambda r: edit_json(r / "manifest.json", lambda d: d["tasks"][0].update(share=0.9)), ["analyze", "{run}", "--no-progress"]
    yield "manifest model key ../../x", lambda r: edit_json(r / "manifest.json", lambda d: d.update(models={"../../x": d["models"]["d8-l1"]}), reseal=True), ["analyze", "{run}", "--no-progress"]
    yield "mechrare.json invalid", lambda r: (r / step5 / "mechrare.json").write_text("{"), ["analyze", "{run}", "--only", "probes", "--no-progress"]
    yield "mechrare.json not an object", lambda r: (r / step5 / "mechrare.json").write_text("[1]"), ["analyze", "{run}", "--only", "probes", "--no-progress"]
    yield "weights truncated", lambda r: (r / step5 / "model.safetensors").write_bytes(b"\x00" * 10), ["analyze", "{run}", "--only", "interference", "--no-progress"]
    yield "weights replaced by a pickle", lambda r: (r / step5 / "model.safetensors").write_bytes(pickle.dumps(Payload(r / "ran"))), ["analyze", "{run}", "--only", "interference", "--no-progress"]
    yield "config.json edited", lambda r: edit_json(r / step5 / "config.json", lambda d: d.update(num_hidden_layers=3)), ["analyze", "{run}", "--only", "interference", "--no-progress"]
    yield "dataset truncated", lambda r: (r / "analyses/probes.nc").write_bytes((r / "analyses/probes.nc").read_bytes()[:3000]), ["report", "{run}"]
    yield "metrics.nc replaced by text", lambda r: (r / "metrics.nc").write_text("hello"), ["report", "{run}"]
    yield "resume state truncated (unfinished model)", lambda r: (unfinished(r), (r / "models/d8-l1/seed_0/resume/state.json").write_text("{")), ["train", "tiny", "--out", "{run}", *SMALL]
    yield "resume state is a pickle (unfinished model)", lambda r: (unfinished(r), (r / "models/d8-l1/seed_0/resume/state.json").write_bytes(pickle.dumps(Payload(r / "ran")))), ["train", "tiny", "--out", "{run}", *SMALL]
    yield "legacy state.pt pickle (unfinished model)", lambda r: (unfinished(r), [p.unlink() for p in (r / "models/d8-l1/seed_0/resume").iterdir()], (r / "models/d8-l1/seed_0/resume/state.pt").write_bytes(pickle.dumps(Payload(r / "ran")))), ["train", "tiny", "--out", "{run}", *SMALL]
    yield "train with another config", None, ["train", "tiny", "--out", "{run}", *SMALL, "--set", "train.lr=0.01"]
    yield "ls on a file", None, ["ls", "{run}/manifest.json"]
    yield "report on a missing folder", None, ["report", "{run}/nope"]


def judge(result, before, after, marker: Path | None = None, added_ok: bool = False) -> tuple[str, int, bool, bool]:
    """``added_ok``: new files are fine (analysis parts of the good checkpoints, kept for the rerun);
    every file that was there must be unchanged."""
    lines = result.stderr.strip().splitlines()
    one_line = len(lines) == 1 and lines[0].startswith("mechrare: error: ") and "Traceback" not in result.stderr
    if added_ok and before is not None and after is not None:
        after = {k: v for k, v in after.items() if k in before}
    unchanged = before == after and (marker is None or not marker.exists())
    ok = result.returncode not in (0, 3, 124) and one_line and unchanged
    return ("ok" if ok else "FAILED"), result.returncode, one_line, unchanged


def main() -> int:
    t0 = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="mechrare-bad-inputs-"))
    rows = []
    try:
        template = work / "template"
        assert cli("train", "tiny", "--out", template, *SMALL).returncode == 0
        assert cli("analyze", template, "--only", "probes", "--no-progress").returncode == 0
        for i, (name, argv) in enumerate(config_cases(work)):
            out = work / f"out{i}"
            result = cli(*[str(a).replace("{out}", str(out)) for a in argv])
            rows.append(("config", name, *judge(result, None, tree(out)), result.stderr.strip()[-200:]))
        for name, argv, keep in out_cases(work):
            before = tree(keep)
            result = cli(*argv)
            rows.append(("--out", name, *judge(result, before, tree(keep)), result.stderr.strip()[-200:]))
        for i, (name, setup, argv) in enumerate(run_cases(template)):
            run = work / f"run{i}"
            shutil.copytree(template, run)
            if setup:
                setup(run)
            before = tree(run)
            result = cli(*[str(a).replace("{run}", str(run)) for a in argv])
            rows.append(("run folder", name, *judge(result, before, tree(run), run / "ran", added_ok=True), result.stderr.strip()[-200:]))
    finally:
        subprocess.run(["umount", str(work / "readonly")], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    counts = Counter((r[0], r[2]) for r in rows)
    print("| inputs | tried | one line, exit 2, nothing written or changed | failed |\n|---|---:|---:|---:|")
    for kind in dict.fromkeys(r[0] for r in rows):
        print(f"| {kind} | {counts[(kind, 'ok')] + counts[(kind, 'FAILED')]} | {counts[(kind, 'ok')]} | {counts[(kind, 'FAILED')]} |")
    codes = Counter(r[3] for r in rows)
    print(f"\nexit codes: {dict(sorted(codes.items()))}; {len(rows)} inputs in {time.perf_counter() - t0:.0f} s")
    for r in rows:
        if r[2] != "ok":
            print(f"FAILED {r[0]}: {r[1]}: exit {r[3]}, one line {r[4]}, unchanged {r[5]}: {r[6]}")
    return 1 if any(r[2] != "ok" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
