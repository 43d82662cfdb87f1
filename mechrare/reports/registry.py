"""What a report is made of: figures and findings, each in a registry.

A :class:`FigureSpec` draws a matplotlib Figure from a :class:`~mechrare.reports.data.RunData`;
a :class:`FindingSpec` measures one claim and returns a :class:`Finding`. Both
name the run kinds they apply to (``ladder``, ``toy``; ``series`` takes the ladder's too) and the datasets they
need. Packages add their own through the ``mechrare.figures`` and
``mechrare.findings`` entry-point groups (the toy model registers its own this
way) or with ``FIGURES.add`` / ``FINDINGS.add``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from mechrare.registry import Registry

HOLDS, FAILS, INCONCLUSIVE, MISSING = "holds", "does not hold", "inconclusive", "not measured"
STATUSES = (HOLDS, FAILS, INCONCLUSIVE, MISSING)


@dataclass
class Finding:
    key: str
    claim: str
    status: str  # one of STATUSES
    evidence: str  # the measured numbers, one line
    rule: str  # how the status was decided
    #: the effect the status is decided on, with its 95% interval (NaN where there is none)
    estimate: float = float("nan")
    ci_low: float = float("nan")
    ci_high: float = float("nan")
    n_seeds: int = 0
    test: str = ""  # the test used, in words
    figure: str = ""  # the figure that shows it (a FIGURES name), set from its FindingSpec

    def to_dict(self) -> dict:
        """The machine-readable row of report/findings.json (NaN as null)."""
        def num(x):
            return None if x is None or x != x else float(x)

        return {"key": self.key, "claim": self.claim, "status": self.status, "estimate": num(self.estimate),
                "ci_low": num(self.ci_low), "ci_high": num(self.ci_high), "n_seeds": int(self.n_seeds),
                "test": self.test, "rule": self.rule, "evidence": self.evidence, "figure": self.figure or None}


@dataclass(frozen=True)
class FindingSpec:
    key: str  # "a", "t1", ...
    measure: Callable  # (RunData) -> Finding
    order: int = 100
    kinds: tuple[str, ...] = ("ladder",)
    figure: str = ""  # the figure that shows the evidence (a FIGURES name)


@dataclass(frozen=True)
class FigureSpec:
    title: str
    caption: str
    needs: tuple[str, ...]  # "metrics" or analysis names
    draw: Callable  # (RunData) -> matplotlib.figure.Figure
    order: int = 100  # position in the report
    kinds: tuple[str, ...] = ("ladder",)  # run kinds it applies to
    #: what the figure shows on this run, read from the numbers: (RunData) -> one or two sentences ("" for none)
    reading: Callable | None = None

    def missing(self, data) -> list[str]:
        return [n for n in self.needs if data.get(n) is None]


class Skip(Exception):
    """Raised by a draw function when the run holds nothing for it to show (the message says why)."""


FIGURES: Registry[FigureSpec] = Registry("figure", entry_point_group="mechrare.figures")
FINDINGS: Registry[FindingSpec] = Registry("finding", entry_point_group="mechrare.findings")


def applicable(registry: Registry, kind: str) -> list[str]:
    """Names of the registry's entries that apply to runs of ``kind``, in report order. A series trained
    elsewhere (``series``) takes what applies to a ladder too: the same datasets, each entry saying
    ``not measured`` (findings) or skipping (figures) where the series lacks what it needs."""
    wanted = {kind, "ladder"} if kind == "series" else {kind}
    names = [n for n in registry.names() if wanted & set(registry.get(n).kinds)]
    return sorted(names, key=lambda n: (registry.get(n).order, n))
