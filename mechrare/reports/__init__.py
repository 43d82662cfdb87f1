"""Views of a run: the feature-retention report (HTML, Markdown, PNG figures) and ``mechrare ls``.

Figures and findings live in registries (:mod:`mechrare.reports.registry`);
figure helpers that leave pyplot alone are in :mod:`mechrare.reports.plotting`.
"""

from mechrare.reports.build import Report, build_report
from mechrare.reports.data import RunData
from mechrare.reports.findings import measure_findings
from mechrare.reports.registry import FIGURES, FINDINGS, FigureSpec, Finding, FindingSpec, Skip

__all__ = ["FIGURES", "FINDINGS", "FigureSpec", "Finding", "FindingSpec", "Report", "RunData", "Skip", "build_report", "measure_findings"]
