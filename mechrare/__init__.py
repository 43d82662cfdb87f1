"""mechrare: why larger models learn rare tasks that smaller ones miss.

Train a ladder of OLMo-2 models on a task mixture with a dense checkpoint
series, analyse every checkpoint, and report rare-task retention::

    import mechrare

    run = mechrare.train("quickstart")                 # or mechrare.open_run("runs/quickstart")
    datasets = mechrare.analyze(run, only=["probes"])  # xarray Datasets, also under runs/.../analyses/
    report = mechrare.report(run)                      # report.findings

    series = mechrare.open_series("SERIES.toml", out="runs/pythia")   # checkpoints trained elsewhere
    mechrare.analyze(series)                           # the same analyses, into runs/pythia/analyses/

Importing ``mechrare`` is cheap: the API and the heavy libraries it uses
(torch, transformers, transformer_lens, sae_lens) load on first use.
"""

from mechrare._version import __version__

#: public name -> the module that defines it (loaded on first access)
_API = {
    "open_run": "mechrare.runs",
    "open_series": "mechrare.runs",
    "Run": "mechrare.runs",
    "train": "mechrare.api",
    "analyze": "mechrare.api",
    "report": "mechrare.api",
    "run": "mechrare.api",
    "fit_probe": "mechrare.api",
    "export_tasks": "mechrare.api",
    "ProbeFit": "mechrare.api",
    "gradient_interference": "mechrare.api",
    "verify": "mechrare.checkpoints.verify",
    "get_activations": "mechrare.activations",
    "ConfigError": "mechrare.errors",
    "MechrareError": "mechrare.errors",
    "RunFolderError": "mechrare.errors",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        import importlib

        value = getattr(importlib.import_module(_API[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mechrare' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
