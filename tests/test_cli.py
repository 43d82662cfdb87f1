"""CLI: bad input is one line on stderr, exit 2, nothing written; ls; config."""

import os
import subprocess
import sys

import pytest

from mechrare.cli import main


def run_cli(*args):
    return main(list(args))


@pytest.mark.parametrize(
    "override, key",
    [
        ("train.stepz=5", "train.stepz: unknown key"),
        ("mixture.tasks.0.frequency=-1", "mixture.tasks[0].frequency: must be finite and > 0"),
        ("train.steps=0", "train.steps: must be >= 1"),
        ("mixture.tasks.0.family=nope", "mixture.tasks[0].family: unknown task family 'nope'"),
        ("ladder.models=[\"d8-l1\", \"enormous\"]", "ladder.models[1]: unknown model size 'enormous'"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys, override, key):
    out = tmp_path / "run"
    code = run_cli("train", "tiny", "--out", str(out), "--set", override, "--no-progress")
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("mechrare: error: ") and key in err and "\n" not in err
    assert not out.exists()


def test_refuses_a_folder_holding_another_config(tiny_run, capsys):
    before = sorted(p.relative_to(tiny_run.path) for p in tiny_run.path.rglob("*"))
    code = run_cli("train", "tiny", "--out", str(tiny_run.path), "--set", "train.lr=0.01", "--no-progress")
    err = capsys.readouterr().err
    assert code == 2 and "different config (config.train.lr: 0.003 != 0.01)" in err
    assert sorted(p.relative_to(tiny_run.path) for p in tiny_run.path.rglob("*")) == before


def test_rerun_of_a_finished_run_is_a_no_op(tiny_run, capsys):
    code = run_cli("train", "tiny", "--out", str(tiny_run.path), "--no-progress")
    assert code == 0
    assert "done already, skipping" in capsys.readouterr().out


def test_ls(tiny_run, capsys):
    assert run_cli("ls", str(tiny_run.path), "--steps") == 0
    out = capsys.readouterr().out
    assert "final accuracy (mean of the last 3 checkpoints" in out and "d24-l2" in out and "facts:8" in out
    assert "d8-l1: 0 1 2 4 8 16 32 50 64 100 128 150 200 250 256 300" in out
    assert run_cli("ls", str(tiny_run.path / "nope")) == 2


def test_config_and_presets(capsys):
    assert run_cli("config", "tiny", "--set", "train.steps=7") == 0
    assert "steps = 7" in capsys.readouterr().out
    assert run_cli("presets") == 0
    assert "quickstart" in capsys.readouterr().out


def test_help_is_fast_and_lazy():
    code = "import sys, mechrare.cli; mechrare.cli.build_parser(); print(sorted(m for m in ('torch', 'transformers', 'sae_lens', 'transformer_lens', 'xarray') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_run_trains_then_lists(tiny_run, capsys):
    assert run_cli("run", "tiny", "--out", str(tiny_run.path), "--no-progress") == 0
    out = capsys.readouterr().out
    assert "done already, skipping" in out and "final accuracy (mean of the last 3 checkpoints" in out
    for name in ("probes", "sae", "neurons", "interference", "ablation"):  # written, or up to date from earlier tests
        assert f"{name}: wrote" in out or f"{name}: up to date" in out, name
    assert "analyses: ablation, interference, neurons, probes, retention, sae" in out
    assert out.index("interference: ") < out.index("neurons: ") < out.index("ablation: ") < out.index("retention: wrote")


def _raise(exc):
    def command(args):
        raise exc
    return command


@pytest.mark.parametrize("errno_name, advice", [("ENOSPC", "the disk is full"), ("EROFS", "read-only"),
                                                ("ENOTDIR", "is a file, not a folder"), ("EIO", "check the path")])
def test_io_errors_are_one_line_naming_the_path(monkeypatch, capsys, errno_name, advice):
    import errno

    import mechrare.cli as cli

    exc = OSError(getattr(errno, errno_name), os.strerror(getattr(errno, errno_name)), "/data/run/metrics.nc")
    monkeypatch.setattr(cli, "cmd_ls", _raise(exc))
    assert cli.main(["ls", "anything"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("mechrare: error: /data/run/metrics.nc: ") and advice in err


def test_a_bug_is_one_line_with_exit_3_and_debug_shows_the_traceback(monkeypatch, capsys):
    import mechrare.cli as cli

    monkeypatch.setattr(cli, "cmd_ls", _raise(KeyError("next_loss_change")))
    assert cli.main(["ls", "anything"]) == 3
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "internal error (KeyError" in err and "--debug" in err
    with pytest.raises(KeyError):
        cli.main(["--debug", "ls", "anything"])


def test_out_of_memory_is_one_line(monkeypatch, capsys):
    import mechrare.cli as cli

    monkeypatch.setattr(cli, "cmd_ls", _raise(RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried ...")))
    assert cli.main(["ls", "anything"]) == 2
    assert "out of memory" in capsys.readouterr().err
