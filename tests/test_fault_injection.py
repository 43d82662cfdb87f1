"""The short fault-injection run (benchmarks/fault_injection.py, one trial per fault kind): every
kill, corruption, truncation, second writer and full disk ends resumed identical to an uninterrupted
run, detected and named, or refused; nothing silently wrong, lost or a traceback."""

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "fault_injection.py"


@pytest.mark.slow
def test_one_trial_of_every_fault_kind(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("fault_injection", SCRIPT)
    faults = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(faults)
    monkeypatch.setenv("MECHRARE_FAULT_ANALYSES", "probes,interference")  # the short version: two analyses
    lines = []
    results = faults.run_trials(1, seed=0, work=tmp_path, echo=lines.append)
    assert set(results) == set(faults.KINDS)
    bad = [(kind, o, d) for kind, rs in results.items() for o, d in rs if o in faults.BAD]
    assert not bad, "\n".join(lines)
    outcomes = {o for rs in results.values() for o, _ in rs}
    assert outcomes <= set(faults.OUTCOMES) - faults.BAD
