"""``mechrare report RUN``: report/index.html (self-contained), report/summary.md, report/figures/*.png.

The first screen of the HTML is the findings table (:mod:`mechrare.reports.findings`);
the figures follow, embedded as base64 PNG so the file can be mailed or
archived alone. Every file is written atomically; a rerun rebuilds the report
from whatever the run folder holds now.
"""

from __future__ import annotations

import base64
import html
import json
import io
import time
from dataclasses import dataclass
from pathlib import Path

from mechrare._version import __version__
from mechrare.atomic import atomic_file
from mechrare.reports import figures as _figures  # noqa: F401  (registers the ladder figures)
from mechrare.reports import figures_scaling as _figures_scaling  # noqa: F401  (loss, interference against size, SAE)
from mechrare.reports import causal as _causal  # noqa: F401  (finding f and the ablation figure)
from mechrare.reports import figures_layers as _figures_layers  # noqa: F401  (intermediate latents, interference per group)
from mechrare.reports.data import FINAL_LAST, FINAL_WORDS, RunData
from mechrare.reports.findings import measure_findings
from mechrare.reports.registry import FIGURES, Finding, Skip, applicable
from mechrare.reports.sweep import chance_of, sweep_cells, sweep_rows

NEEDS_COMMAND = {
    "metrics": "mechrare train",
    "probes": "mechrare analyze RUN --only probes",
    "sae": "mechrare analyze RUN --only sae",
    "neurons": "mechrare analyze RUN --only neurons",
    "interference": "mechrare analyze RUN --only interference",
    "retention": "mechrare analyze RUN --only retention",
    "ablation": "mechrare analyze RUN --only ablation",
    "toy": "mechrare toy",
}


@dataclass
class Rendered:
    name: str
    title: str
    caption: str
    png: bytes | None
    note: str = ""  # why it was not drawn
    reading: str = ""  # what it shows on this run, from the numbers


@dataclass
class Report:
    """A written report: where it is, and the findings it states."""

    index: Path  # report/index.html
    summary: Path  # report/summary.md
    findings: list[Finding]
    figures: list[Rendered]
    json: Path | None = None  # report/findings.json

    def table(self) -> str:
        """The findings as a Markdown table."""
        return findings_markdown(self.findings)


def render_figures(data: RunData, progress: bool = True) -> list[Rendered]:
    from tqdm.auto import tqdm

    out = []
    for name in tqdm(applicable(FIGURES, data.kind), desc="figures", unit="fig", disable=not progress):
        spec = FIGURES.get(name)
        missing = spec.missing(data)
        if missing:
            how = "; ".join(f"`{data.concrete(NEEDS_COMMAND.get(m, m))}`" for m in missing)
            out.append(Rendered(name, spec.title, spec.caption, None, f"not drawn: needs {', '.join(missing)} ({how})"))
            continue
        try:
            fig = spec.draw(data)
        except Skip as why:
            out.append(Rendered(name, spec.title, spec.caption, None, f"not drawn: {why}"))
            continue
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
        reading = spec.reading(data) if spec.reading is not None else ""
        out.append(Rendered(name, spec.title, spec.caption, buf.getvalue(), reading=reading))
    return out


def _write_bytes(path: Path, payload: bytes) -> None:
    with atomic_file(path) as tmp:
        Path(tmp).write_bytes(payload)


def _write_text(path: Path, text: str) -> None:
    _write_bytes(path, text.encode("utf-8"))


# -- Markdown ---------------------------------------------------------------------------------
def effect_text(f: Finding) -> str:
    """The decided-on effect: estimate [95% interval] (seeds), or a dash."""
    if f.estimate != f.estimate:  # NaN
        return "-"
    ci = f" [{f.ci_low:+.3f}, {f.ci_high:+.3f}]" if f.ci_low == f.ci_low else " (no interval)"
    return f"{f.estimate:+.3f}{ci}"


def findings_markdown(findings: list[Finding], drawn: set[str] | None = None) -> str:
    """The findings as a Markdown table; ``drawn``: the figures written, which each finding's claim links to."""
    lines = ["| finding | status | effect [95% CI] | seeds | measured |", "|---|---|---|---|---|"]
    for f in findings:
        link = f" ([figure](figures/{f.figure}.png))" if drawn and f.figure in drawn else ""
        cells = [f.claim + link, f"**{f.status}**", effect_text(f), str(f.n_seeds or "-"), f.evidence]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


def findings_json(data: RunData, findings: list[Finding]) -> str:
    """report/findings.json: one record per finding (key, status, estimate, ci_low, ci_high, n_seeds, test, rule)."""
    payload = {"run": data.manifest.name, "mechrare_version": __version__, "seeds": data.seeds,
               "rare_task": data.rare_task, "common_task": data.common_task,
               "findings": [f.to_dict() for f in findings]}
    return json.dumps(payload, indent=2) + "\n"


def source_line(data: RunData) -> str:
    """Where an external series' checkpoints come from (its SERIES.toml's models), and its suspect checkpoints."""
    from mechrare.checkpoints.folders import read_record

    parts = []
    for m in data.manifest.config.get("models", []):
        where = f"{m['repo']}@{m.get('revision', 'step{step}')}" if m.get("repo") else (m.get("path") or f"{len(m.get('paths', []))} listed folders")
        parts.append(f"{m['name']}: {where}")
    record = read_record(data.run.path)
    flagged = [f"{model} step {s} ({e['suspect']})" for model, m in record["models"].items()
               for s, e in sorted(m["checkpoints"].items(), key=lambda kv: int(kv[0])) if e.get("suspect")]
    excluded = data.manifest.config.get("exclude_suspect", False)
    suspect = ("suspect checkpoints, " + ("left out: " if excluded else "analysed (exclude_suspect = true leaves them out): ")
               + "; ".join(flagged)) if flagged else "no suspect checkpoint (no identical weights, none out of place)"
    return "Series trained elsewhere, checkpoints from " + "; ".join(parts) + f". {suspect[0].upper()}{suspect[1:]}."


def summary_markdown(data: RunData, findings: list[Finding], figures: list[Rendered]) -> str:
    lines = [
        f"# mechrare report: {data.manifest.name or data.run.path.name}",
        "",
        *([source_line(data), ""] if data.kind == "series" else []),
        f"Run folder `{data.run.path}`; {len(data.models)} models x {len(data.seeds)} training seed{'s' if len(data.seeds) != 1 else ''}; rare task **{data.rare_task}** "
        f"(share {data.shares[data.rare_task]:.3f}), common task **{data.common_task}** (share {data.shares[data.common_task]:.3f}).",
        "",
        "## Findings",
        "",
        findings_markdown(findings, {r.name for r in figures if r.png is not None}),
        "",
        "How each status was decided:",
        "",
    ]
    lines += [f"- ({f.key}) {f.rule}." + (f" Test: {f.test}." if f.test else "") for f in findings]
    lines += ["", "## Models", "", model_table_markdown(data), "", models_note(data), ""]
    sweep = sweep_rows(data, _chance(data))
    if sweep is not None:
        header, rows = sweep
        lines += ["## Frequency sweep", "", SWEEP_CAPTION, "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(r) + " |" for r in rows] + [""]
    lines += ["## Figures", ""]
    for r in figures:
        if r.png is None:
            lines.append(f"- {r.title}: {r.note}")
        else:
            lines.append(f"- [{r.title}](figures/{r.name}.png): {r.caption}" + (f" **On this run:** {r.reading}" if r.reading else ""))
    lines += ["", f"_mechrare {__version__}, {time.strftime('%Y-%m-%d %H:%M')}_", ""]
    return "\n".join(lines)


SWEEP_CAPTION = ("Final accuracy of the swept task (mean of the last 3 checkpoints, mean over seeds [95% interval: seeds and "
                 "eval items, clipped to [0, 1]]) by model (rows) and the task's share of training sequences (columns); * : the interval lies "
                 "above chance. Down a column: at a fixed frequency, do larger models learn it? Along a row: from which "
                 "frequency does a size learn it?")


def _chance(data: RunData) -> float | None:
    """The swept task's chance level, from retention.nc where present."""
    found = sweep_cells(data)
    return None if found is None else chance_of(data, found[0])


def model_rows(data: RunData) -> tuple[list[str], list[list[str]]]:
    var = "retained_signal" if data.kind == "toy" else "accuracy"
    header = ["model", "parameters", "trained on"] + [f"{t} final {'s_k' if data.kind == 'toy' else 'acc.'}" for t in data.tasks]
    rows = []
    for model in data.ladder + data.interventions + data.sweep_points:
        iv = data.intervention(model)
        mix = ", ".join(f"{t} x{f:g}" for t, f in iv.upsample.items()) if iv else (
            "elsewhere (its own data)" if data.kind == "series" else "the run's mixture")
        accs = [f"{data.final(var, model, t, last=1 if data.kind == 'toy' else FINAL_LAST):.3f}" if data.metrics is not None else "-" for t in data.tasks]
        rows.append([model, f"{data.n_params(model):,}", mix] + accs)
    return header, rows


def models_note(data: RunData) -> str:
    """What the model table's numbers are: the window "final" is read at, the eval sets and chance."""
    if data.kind == "toy":
        return "final s_k: the retained signal at the last step."
    parts = []
    for t in data.tasks:
        record = data.manifest.task(t)
        kind = "recall: eval set = training set" if record.split == "all" else "held-out"
        parts.append(f"{t}: {record.eval_examples} items, {kind}")
    return (f"final acc.: {FINAL_WORDS} (as `mechrare ls` prints it), mean over seeds. Eval sets: " + "; ".join(parts) + ".")


def model_table_markdown(data: RunData) -> str:
    header, rows = model_rows(data)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


# -- HTML -------------------------------------------------------------------------------------
CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1200px;margin:1.2em auto;padding:0 1em;color:#222}
h1{font-size:1.5em;margin:.2em 0} h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.92em;margin:.6em 0} td,th{border:1px solid #ccc;padding:.35em .55em;vertical-align:top;text-align:left}
th{background:#f3f3f3} .holds{background:#dff3df;font-weight:600} .fails{background:#fbe3e3;font-weight:600}
.missing{background:#eee;color:#555} .meta{color:#555;font-size:.9em} figure{margin:1.2em 0}
figure img{max-width:100%;border:1px solid #eee} figcaption{color:#444;font-size:.9em} .note{color:#777;font-style:italic}
"""

STATUS_CLASS = {"holds": "holds", "does not hold": "fails", "inconclusive": "missing", "not measured": "missing"}


def _e(text: str) -> str:
    return html.escape(str(text))


def html_report(data: RunData, findings: list[Finding], figures: list[Rendered]) -> str:
    name = data.manifest.name or data.run.path.name
    drawn = {r.name for r in figures if r.png is not None}

    def claim(f: Finding) -> str:
        if f.figure in drawn:
            return f"{_e(f.claim)} <a href='#{_e(f.figure)}'>(figure)</a>"
        return _e(f.claim)

    rows = "".join(
        f"<tr><td>{claim(f)}</td><td class='{STATUS_CLASS.get(f.status, '')}'>{_e(f.status)}</td>"
        f"<td>{_e(effect_text(f))}</td><td>{_e(f.n_seeds or '-')}</td><td>{_e(f.evidence)}</td></tr>"
        for f in findings
    )
    rules = "".join(f"<li>({_e(f.key)}) {_e(f.rule)}." + (f" Test: {_e(f.test)}." if f.test else "") + "</li>" for f in findings)
    header, mrows = model_rows(data)
    models = "<tr>" + "".join(f"<th>{_e(h)}</th>" for h in header) + "</tr>" + "".join(
        "<tr>" + "".join(f"<td>{_e(c)}</td>" for c in r) + "</tr>" for r in mrows
    )
    figs = []
    for r in figures:
        if r.png is None:
            figs.append(f"<h2 id='{_e(r.name)}'>{_e(r.title)}</h2><p class='note'>{_e(r.note)}</p>")
            continue
        b64 = base64.b64encode(r.png).decode("ascii")
        figs.append(
            f"<h2 id='{_e(r.name)}'>{_e(r.title)}</h2><figure><img alt='{_e(r.title)}' src='data:image/png;base64,{b64}'>"
            f"<figcaption>{_e(r.caption)}" + (f" <b>On this run:</b> {_e(r.reading)}" if r.reading else "") + "</figcaption></figure>"
        )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>mechrare report: {_e(name)}</title>
<style>{CSS}</style></head><body>
<h1>Feature-retention report: {_e(name)}</h1>
{f'<p class="meta">{_e(source_line(data))}</p>' if data.kind == "series" else ''}
<p class="meta">rare task <b>{_e(data.rare_task)}</b> (share {data.shares[data.rare_task]:.3f}), common task
<b>{_e(data.common_task)}</b> (share {data.shares[data.common_task]:.3f}); {len(data.models)} models x {len(data.seeds)} training seed(s); run folder {_e(data.run.path)}</p>
<h2>Findings</h2>
<table id="findings"><tr><th>finding</th><th>status</th><th>effect [95% CI]</th><th>seeds</th><th>measured</th></tr>{rows}</table>
<details><summary class="meta">how each status was decided</summary><ul class="meta">{rules}</ul></details>
<h2>Models</h2><table>{models}</table><p class="meta">{_e(models_note(data))}</p>
{_sweep_html(data)}
{''.join(figs)}
<p class="meta">mechrare {_e(__version__)}, {_e(time.strftime('%Y-%m-%d %H:%M'))}</p>
</body></html>
"""


def _sweep_html(data: RunData) -> str:
    sweep = sweep_rows(data, _chance(data))
    if sweep is None:
        return ""
    header, rows = sweep
    body = "<tr>" + "".join(f"<th>{_e(h)}</th>" for h in header) + "</tr>" + "".join(
        "<tr>" + "".join(f"<td>{_e(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<h2>Frequency sweep</h2><p class='meta'>{_e(SWEEP_CAPTION)}</p><table id='sweep'>{body}</table>"


def build_report(run, progress: bool = True) -> Report:
    """Write report/index.html, report/summary.md and report/figures/*.png from whatever the
    run folder holds now; ``run`` is a path or a :class:`~mechrare.runs.Run`."""
    data = RunData.load(run)
    findings = measure_findings(data)
    figures = render_figures(data, progress=progress)
    folder = data.run.path / "report"
    for r in figures:
        if r.png is not None:
            _write_bytes(folder / "figures" / f"{r.name}.png", r.png)
    summary = folder / "summary.md"
    _write_text(summary, summary_markdown(data, findings, figures))
    index = folder / "index.html"
    _write_text(index, html_report(data, findings, figures))
    record = folder / "findings.json"
    _write_text(record, findings_json(data, findings))
    return Report(index, summary, findings, figures, record)
