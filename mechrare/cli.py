"""``mechrare``: a thin argparse front over the public API (:mod:`mechrare.api`).

Exit codes: 0 done; 1 ``ls --verify`` found bad files; 2 bad input, a damaged file or an I/O error
(disk full, read-only, not a directory), as one line on stderr naming the path and what to do; 3 an
internal error (a bug: one line, and ``--debug`` shows the traceback); 130 interrupted. Every write is
atomic, so after 2 or 130 the same command resumes.
"""

from __future__ import annotations

import argparse
import logging
import sys

from pathlib import Path

from mechrare.errors import ConfigError, MechrareError

EXIT_USAGE = 2
EXIT_INTERNAL = 3

#: errno -> what to do, for the I/O errors a user meets
IO_ADVICE = {
    "ENOSPC": "the disk is full: free space, then rerun the same command to resume",
    "EDQUOT": "the disk quota is used up: free space, then rerun the same command to resume",
    "EFBIG": "the file is larger than this system allows: free space or raise the limit, then rerun to resume",
    "EROFS": "the file system is read-only: choose a writable --out",
    "EACCES": "permission denied: choose a folder you can write, or fix its permissions",
    "EPERM": "permission denied: choose a folder you can write, or fix its permissions",
    "ENOTDIR": "a path component is a file, not a folder: choose another --out",
    "EISDIR": "a folder stands where a file is expected: move it away",
    "ENAMETOOLONG": "the path is too long: choose a shorter --out",
}


def io_error_line(exc: OSError) -> str:
    """One line for an OSError: the path, the system's words and what to do."""
    import errno

    name = errno.errorcode.get(exc.errno or 0, "")
    where = exc.filename if exc.filename is not None else "a file"
    advice = IO_ADVICE.get(name, "check the path and the disk, then rerun the same command to resume")
    return f"{where}: {exc.strerror or type(exc).__name__}; {advice}"


def _add_set_arg(p: argparse.ArgumentParser, example: str) -> None:
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=f"override a setting, e.g. {example}")


def _add_config_args(p: argparse.ArgumentParser, optional: bool = False) -> None:
    p.add_argument(
        "config",
        nargs="?" if optional else None,
        default="quickstart" if optional else None,
        help="a preset name (see `mechrare presets`) or a TOML config file" + (" [quickstart]" if optional else ""),
    )
    p.add_argument("--out", help="run folder to write [runs/<config name>]")
    _add_set_arg(p, "--set train.steps=100 --set mixture.tasks.0.frequency=0.5 --set probes.probe=ridge")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    from mechrare._version import __version__

    parser = argparse.ArgumentParser(
        prog="mechrare",
        description="Train model ladders on rare/common task mixtures and study rare-task retention.",
    )
    parser.add_argument("--version", action="version", version=f"mechrare {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of any error")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="train a ladder of models and save dense checkpoint series")
    _add_config_args(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("analyze", help="run analyses over every checkpoint of a run or a SERIES.toml (resumable)")
    p.add_argument("run", help="run folder, or a SERIES.toml describing checkpoints trained elsewhere")
    p.add_argument("--out", help="for a SERIES.toml: the folder its record and analyses go to [runs/<series name>]")
    p.add_argument("--only", help="comma-separated analyses [all that apply]: evaluation (series), probes, sae, "
                                  "interference, neurons, ablation, retention")
    _add_set_arg(p, "--set probes.probe=ridge --set probes.params.C=0.5")
    p.add_argument("--models", help="comma-separated models [all]")
    p.add_argument("--steps", help="comma-separated checkpoint steps [all]")
    p.add_argument("--jobs", type=int, default=0, help="worker processes on CPU [0: one per core; 1: none]")
    p.add_argument("--keep-parts", action="store_true",
                   help="keep analyses/<name>.parts/ after an analysis completes [removed; an interrupted one keeps them]")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_analyze)

    p = sub.add_parser("report", help="write the feature-retention report: report/index.html, summary.md, figures")
    p.add_argument("run", help="run folder")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("run", help="train, every analysis, then the report [quickstart]; rerun to resume")
    _add_config_args(p, optional=True)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("toy", help="the paper's solvable toy model at many widths, then its report")
    p.add_argument("config", nargs="?", help="a TOML file of ToyConfig keys [the defaults]")
    p.add_argument("--out", default="runs/toy", help="run folder to write [runs/toy]")
    _add_set_arg(p, "--set gap=400 --set widths=[1,2,4,8]")
    p.add_argument("--no-report", action="store_true", help="write the datasets only")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_toy)

    p = sub.add_parser("ls", help="summarise a run folder or a SERIES.toml: models, checkpoints, suspect checkpoints, final metrics")
    p.add_argument("run", help="run folder, or a SERIES.toml (its checkpoints are found, hashed and checked; nothing is written)")
    p.add_argument("--out", help="for a SERIES.toml: the folder it was analysed into (reuses its record)")
    p.add_argument("--steps", action="store_true", help="list every checkpoint step")
    p.add_argument("--verify", action="store_true",
                   help="check every checkpoint, resume state, dataset and analysis part against its checksum; "
                        "name every bad file (exit 1 when there is one)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar while verifying")
    p.set_defaults(func=cmd_ls)

    p = sub.add_parser("export-tasks", help="write a config's tasks as JSONL in another tokenizer's ids (for a SERIES.toml)")
    _add_config_args(p)
    p._option_string_actions["--out"].help = "folder for the task files and mapping.json [tasks]"
    p.add_argument("--tokenizer", required=True, help="a tokenizer folder, or a checkpoint folder that holds one")
    p.add_argument("--examples", type=int, default=512, help="training draws per task, besides its eval set [512]")
    p.add_argument("--seed", type=int, default=0, help="which random tokens stand for the tasks' words [0]")
    p.set_defaults(func=cmd_export_tasks)

    p = sub.add_parser("presets", help="list built-in presets")
    p.set_defaults(func=cmd_presets)

    p = sub.add_parser("config", help="print the resolved config (TOML) of a preset or file")
    _add_config_args(p)
    p.set_defaults(func=cmd_config)
    return parser


def _analysis_settings(overrides: list[str]) -> dict:
    from mechrare.config import apply_overrides

    return apply_overrides({}, overrides)


def _steps(text: str | None) -> list[int] | None:
    from mechrare.errors import ConfigError

    if text is None:
        return None
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"--steps: expected comma-separated checkpoint steps, e.g. 0,100,1500; got {text!r}") from None


def cmd_train(args) -> int:
    import mechrare.api as api

    from mechrare.ranks import from_env

    run = api.train(args.config, args.out, overrides=args.overrides, progress=not args.no_progress, echo=print)
    if from_env().main:  # under torchrun, one line, not one per process
        print(f"trained: {run.path}  (inspect with `mechrare ls {run.path}`)")
    return 0


def cmd_analyze(args) -> int:
    import mechrare.api as api

    from mechrare.series import is_series_file

    if args.out is not None and not is_series_file(args.run):
        raise ConfigError(f"--out: is for a SERIES.toml; {args.run} is a run folder, whose analyses go into it")
    api.analyze(args.run, only=args.only, models=args.models, steps=_steps(args.steps), jobs=args.jobs, out=args.out,
                keep_parts=args.keep_parts, progress=not args.no_progress, echo=print, **_analysis_settings(args.overrides))
    return 0


def _print_report(rep) -> None:
    print(f"report: {rep.index}  (and {rep.summary})")
    print("## Findings\n")
    print(rep.table())


def cmd_report(args) -> int:
    import mechrare.api as api

    _print_report(api.report(args.run, progress=not args.no_progress))
    return 0


def cmd_run(args) -> int:
    import time

    import mechrare.api as api
    from mechrare.reports.listing import describe_run

    t0 = time.perf_counter()
    progress = not args.no_progress
    name, cfg = api.load_run_config(args.config, args.overrides)  # every setting checked before training
    run = api.train(cfg, args.out, name=name, progress=progress, echo=print)
    print(f"trained: {run.path}")
    api.analyze(run, progress=progress, echo=print, **cfg.analyses)
    print(describe_run(run.path))
    _print_report(api.report(run, progress=progress))
    print(f"mechrare run: {time.perf_counter() - t0:.0f} s in all")
    return 0


def cmd_toy(args) -> int:
    import time

    import mechrare.api as api
    from mechrare.config import apply_overrides, from_dict, read_source
    from mechrare.toy.config import ToyConfig
    from mechrare.toy.run import write_toy_run

    t0 = time.perf_counter()
    name, data = read_source(args.config) if args.config else ("toy", {})
    cfg = from_dict(ToyConfig, apply_overrides(data, args.overrides), "toy")
    run = write_toy_run(cfg, args.out, name=name, progress=not args.no_progress)
    print(f"toy: wrote {run.path} (metrics.nc, analyses/interference, neurons, retention, toy)")
    if not args.no_report:
        _print_report(api.report(run.path, progress=not args.no_progress))
    print(f"mechrare toy: {time.perf_counter() - t0:.1f} s in all")
    return 0


def cmd_ls(args) -> int:
    from mechrare.reports.listing import describe_run, describe_series
    from mechrare.series import inspect_series, is_series_file

    if is_series_file(args.run):
        spec, record = inspect_series(args.run, args.out, progress=not args.no_progress)
        recorded = args.out if args.out and (Path(args.out) / "manifest.json").is_file() else None
        print(describe_series(spec.name, record, Path(recorded) if recorded else None, args.steps, spec.exclude_suspect))
        if args.verify:
            from mechrare.checkpoints.verify import series_problems

            problems, n = series_problems(record)
            return _print_verified(problems, {"checkpoints": n})
        return 0
    if args.out is not None:
        raise ConfigError(f"--out: is for a SERIES.toml; {args.run} is a run folder")
    print(describe_run(args.run, list_steps=args.steps))
    if not args.verify:
        return 0
    from mechrare.checkpoints.verify import verify_run

    return _print_verified(*verify_run(args.run, progress=not args.no_progress))


def cmd_export_tasks(args) -> int:
    import mechrare.api as api

    out = args.out or "tasks"
    files = api.export_tasks(args.config, args.tokenizer, out, overrides=args.overrides, train_examples=args.examples, seed=args.seed)
    print(f"wrote {len(files)} task files and mapping.json to {out}: " + ", ".join(f.name for f in files))
    return 0


def _print_verified(problems: list, counts: dict[str, int]) -> int:
    """What ``ls --verify`` prints; 1 when a file is bad."""
    checked = ", ".join(f"{n} {kind}" for kind, n in counts.items())
    if not problems:
        print(f"\nverified: {checked}: every file matches its checksum")
        return 0
    print(f"\nverify: {len(problems)} bad file(s) among {checked}:")
    print("\n".join(f"  {p}" for p in problems))
    return 1


def cmd_presets(args) -> int:
    from mechrare.config import preset_names

    print("\n".join(preset_names()))
    return 0


def cmd_config(args) -> int:
    from mechrare.api import load_run_config
    from mechrare.config import dump_toml

    _, config = load_run_config(args.config, args.overrides)
    print(dump_toml(config), end="")
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("mechrare: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.debug:
            raise
        if isinstance(exc, MechrareError):
            line, code = str(exc), EXIT_USAGE
        elif isinstance(exc, OSError):
            line, code = io_error_line(exc), EXIT_USAGE
        elif isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError" or "can't allocate memory" in str(exc):
            line, code = "out of memory: choose smaller models, batch_size or eval_batch_size", EXIT_USAGE
        else:
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            line = f"internal error ({type(exc).__name__}: {first}); rerun with --debug for the traceback and report it"
            code = EXIT_INTERNAL
        print(f"mechrare: error: {' '.join(line.split())}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
