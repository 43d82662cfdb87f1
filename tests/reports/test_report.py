"""`mechrare report`: files, self-containment, what a partial run says, and the page in a real browser."""

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

import _browser
from mechrare.cli import main as run_cli
from mechrare.reports.build import build_report
from mechrare.reports.figures import FIGURES

STATUSES = {"holds", "does not hold", "inconclusive", "not measured"}


@pytest.fixture(scope="module")
def report(tiny_run):
    """Every analysis on the tiny run (resuming what other tests made), then the report."""
    assert run_cli(["analyze", str(tiny_run.path), "--no-progress"]) == 0
    written = build_report(tiny_run.path, progress=False)
    assert [f.key for f in written.findings] == ["a", "b", "c", "d", "e", "f"]
    assert written.summary == written.index.parent / "summary.md"
    return written.index


def findings_rows(summary: str) -> list[list[str]]:
    table = summary.split("## Findings")[1].split("How each status")[0]
    rows = [r for r in table.strip().splitlines() if r.startswith("| (")]
    return [[c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", r.strip().strip("|"))] for r in rows]


def test_report_files_and_findings(report, tiny_run):
    folder = report.parent
    summary = (folder / "summary.md").read_text()
    rows = findings_rows(summary)
    assert [r[0][:3] for r in rows] == ["(a)", "(b)", "(c)", "(d)", "(e)", "(f)"]
    for claim, status, effect, seeds, evidence in rows:
        assert status.strip("*") in STATUSES and evidence and seeds in ("1", "-")
    # the tiny run has everything, so every finding is measured, (e) included (compare:4 is upsampled)
    assert all(r[1] != "**not measured**" for r in rows)
    assert "d8-l1-up5 (x5)" in rows[4][4]
    # one seed: no seed-to-seed variance, so no test that needs it can hold
    for key in (0, 2, 3, 4, 5):
        assert rows[key][1] == "**inconclusive**" and "the test needs >= 2" in rows[key][4]
        assert key == 2 or "no interval" in rows[key][2]  # (c)'s effect is a fraction of seeds, with an exact interval
    # findings.json carries the same findings, machine-readable
    record = json.loads((folder / "findings.json").read_text())
    assert [f["key"] for f in record["findings"]] == ["a", "b", "c", "d", "e", "f"] and record["seeds"] == [0]
    for f, row in zip(record["findings"], rows):
        assert f["status"] == row[1].strip("*") and f["rule"] in summary and f["test"] in summary
        assert set(f) >= {"key", "status", "estimate", "ci_low", "ci_high", "n_seeds", "test", "rule"}
    assert record["findings"][0]["ci_low"] is None and record["findings"][0]["n_seeds"] == 1
    pngs = sorted(p.stem for p in (folder / "figures").glob("*.png"))
    assert pngs == sorted(["accuracy", "accuracy_size", "loss", "probes", "latents", "sae", "neurons", "turnover", "ablation",
                           "cosine", "interference_size", "layers", "coupling", "timeline", "intervention"])
    # each finding links to the figure that shows it, and the drawn figures say what they show on this run
    for key, figure in zip("abcdef", ["accuracy_size", "neurons", "timeline", "interference_size", "intervention", "ablation"]):
        assert f"([figure](figures/{figure}.png))" in rows["abcdef".index(key)][0]
    assert "**On this run:** final accuracy (d8-l1/d16-l2/d24-l2): facts:8 " in summary
    with_reading = [name for name in pngs if FIGURES.get(name).reading is not None]
    assert len(with_reading) >= 12
    for name in with_reading:  # every drawn figure that reads its numbers says something on this run
        line = next(line for line in summary.splitlines() if f"](figures/{name}.png): " in line)
        assert "**On this run:** " in line and not line.rstrip().endswith("**On this run:**"), name
    for p in (folder / "figures").glob("*.png"):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(folder.rglob("*.tmp*"))


def test_html_is_self_contained_and_opens_with_the_findings(report):
    page = report.read_text()
    srcs = re.findall(r"<img[^>]*src='([^']*)'", page)
    assert len(srcs) == 15 and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert not re.search(r"(src|href)=['\"](https?:|figures/)", page)
    # the findings table comes before the first figure
    assert page.index("id=\"findings\"") < page.index("<img")
    for status in STATUSES:
        page = page.replace(f">{status}<", "")
    assert page.count("<tr><td>(") == 6
    assert page.count("(figure)</a>") == 6


def test_partial_run_says_what_is_missing(tiny_run, tmp_path):
    run = tmp_path / "partial"
    run.mkdir()
    shutil.copy(tiny_run.path / "manifest.json", run)
    shutil.copy(tiny_run.path / "metrics.nc", run)
    index = build_report(run, progress=False).index
    summary = (index.parent / "summary.md").read_text()
    statuses = [r[1] for r in findings_rows(summary)]
    # (a) and (e) need only metrics.nc; (b), (c), (d) need analyses this copy lacks
    assert statuses[0] != "**not measured**" and statuses[4] != "**not measured**"
    assert statuses[1:4] == ["**not measured**"] * 3 and statuses[5] == "**not measured**"  # (f) needs ablation.nc
    assert f"not drawn: needs probes (`mechrare analyze {run} --only probes`)" in summary  # this folder, not RUN
    assert f"not drawn: needs neurons (`mechrare analyze {run} --only neurons`)" in summary
    assert f"(`mechrare analyze {run} --only retention`)" in summary and "analyze RUN" not in summary
    assert sorted(p.stem for p in (index.parent / "figures").glob("*.png")) == ["accuracy", "accuracy_size", "intervention", "loss"]


def test_report_cli_bad_folder(tmp_path, capsys):
    assert run_cli(["report", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mechrare: error:") and "\n" not in err


def test_figures_registry_lists_the_report_figures():
    assert {"accuracy", "probes", "neurons", "cosine", "coupling", "timeline", "intervention"} <= set(FIGURES.names())


@pytest.mark.slow
def test_every_figure_renders_in_headless_chromium(report, tmp_path):
    why = _browser.available()
    if why:
        pytest.skip(f"no browser: {why}")
    shot, full = tmp_path / "first_screen.png", tmp_path / "full_page.png"
    seen = _browser.render(report, shot, (1400, 900), full_page=full)
    assert len(seen["images"]) == 15
    for img in seen["images"]:
        assert img["complete"] and img["naturalWidth"] > 0 and img["naturalHeight"] > 0, img
    assert seen["overflow"] <= 0  # no horizontal scroll at 1400 px
    for png in (shot, full):
        data = png.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    assert full.stat().st_size > shot.stat().st_size  # the whole page, not the first screen again
    keep = os.environ.get("MECHRARE_SCREENSHOTS")  # a folder to keep them in, for a look
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        for png in (shot, full):
            shutil.copy(png, Path(keep) / png.name)


def test_owned_neurons_are_counted_out_of_each_models_own_mlp(report, tiny_run):
    from mechrare import open_run
    from mechrare.reports.figures import mlp_neurons

    run = open_run(tiny_run.path)
    ds = run.dataset("neurons")
    for model in run.models:
        config = run.series.load(model, 0).config
        assert mlp_neurons(ds, model) == config.intermediate_size * config.num_hidden_layers
    assert len({mlp_neurons(ds, m) for m in run.models}) > 1  # the ladder's sizes differ: no shared padded count


def test_ls_and_the_report_read_final_accuracy_the_same_way(report, tiny_run):
    from mechrare.checkpoints.store import CheckpointStore
    from mechrare.reports.data import RunData
    from mechrare.reports.listing import final_accuracy_rows

    header, rows = final_accuracy_rows(CheckpointStore(tiny_run.path))
    data = RunData.load(tiny_run.path)
    assert header[:2] == ["model", "steps"] and "facts:8 (recall)" in header and "compare:4" in header
    tasks = data.tasks
    for row in rows:
        steps = data.metrics.sel(model=row[0]).dropna("step", how="all").step.values[-3:]
        assert row[1] == f"{int(steps[0])}..{int(steps[-1])}"
        for task, cell in zip(tasks, row[2:]):
            assert cell == f"{data.final('accuracy', row[0], task):.3f}", (row[0], task)
    page = (report.parent / "summary.md").read_text()
    assert "final acc.: mean of the last 3 checkpoints" in page and "facts:8: " in page and "recall: eval set = training set" in page


def test_interference_is_drawn_in_the_warm_colour():
    from matplotlib import colormaps

    from mechrare.reports.figures import INTERFERENCE_CMAP, INTERFERENCE_LABEL

    cmap = colormaps[INTERFERENCE_CMAP]
    negative, positive = cmap(0.0), cmap(1.0)  # cos = -scale and +scale
    assert negative[0] > negative[2] and positive[2] > positive[0]  # red for interference (cos < 0), blue for aligned
    assert "red < 0: interference" in INTERFERENCE_LABEL


def test_probe_titles_give_chance_items_and_the_control(report, tiny_run):
    from mechrare import open_run
    from mechrare.reports.figures import probe_title

    ds = open_run(tiny_run.path).dataset("probes")
    for target in [str(t) for t in ds.target.values]:
        title = probe_title(ds, target)
        n = int(ds.n_classes.sel(target=target))
        assert f"chance {1 / n:.2f}" in title and f"{int(ds.n_test.sel(target=target))} test items" in title
        control = float(ds.control_score.sel(target=target).mean())
        assert ("selectivity uninformative" in title) == (control >= 0.9)


def test_steps_of_drops_steps_no_seed_has_whatever_the_dimension_order():
    import numpy as np
    import xarray as xr

    from mechrare.reports.data import steps_of

    v = np.ones((1, 2, 4))
    v[0, :, 3] = np.nan  # no seed at step 3
    v[0, 0, 1] = np.nan  # one seed missing at step 1: kept
    ds = xr.Dataset({"x": (("model", "seed", "step"), v)}, coords={"model": ["a"], "step": [0, 1, 2, 3]})
    steps, da = steps_of(ds, "a", "x")
    assert list(steps) == [0, 1, 2] and da.sizes["step"] == 3


def test_interference_against_size_points_match_the_finding_per_seed(report, tiny_run):
    from mechrare.reports.data import RunData
    from mechrare.reports.figures_scaling import size_points
    from mechrare.reports.findings import interference_by_model

    data = RunData.load(tiny_run.path)
    points = size_points(data)
    per = interference_by_model(data)
    assert [p[0] for p in points["coupling"]] == sorted(float(data.n_params(m)) for m in data.ladder)
    for (n, mean, low, high, seeds), m in zip(points["coupling"], data.ladder):
        assert mean == pytest.approx(float(per[m]["coupling"].mean())) and seeds == 1
        assert np.isnan(low) and np.isnan(high)  # one seed: no interval drawn
    assert {"loss", "interference_size", "sae"} <= set(FIGURES.names())
    page = (report.parent / "index.html").read_text()
    assert page.count("<img") == 15  # the new figures render in the report


def test_accuracy_panels_name_the_eval_set_and_chance(report, tiny_run):
    from mechrare.reports.data import RunData
    from mechrare.reports.figures import accuracy_title
    from mechrare.reports.sweep import chance_of

    data = RunData.load(tiny_run.path)
    assert accuracy_title(data, "facts:8", None).endswith("recall (eval = training set) items")
    chance = chance_of(data, "compare:4")
    assert chance is not None and f"chance {chance:.3f}" in accuracy_title(data, "compare:4", chance)
    assert f"{data.eval_examples('compare:4')} held-out items" in accuracy_title(data, "compare:4", chance)


def test_latent_probes_and_per_group_interference_read_the_datasets(report, tiny_run):
    from mechrare.reports.data import RunData
    from mechrare.reports.figures_layers import best_depth, group_cosines, latent_targets

    data = RunData.load(tiny_run.path)
    probes, inter = data.analyses["probes"], data.analyses["interference"]
    targets = latent_targets(data, probes)
    assert targets and not any(t.endswith("/answer") for t in targets)
    rare = [t for t in targets if t.startswith(data.rare_task + "/")]
    assert targets[: len(rare)] == rare  # the rare task's latents (where it has any) first
    model = data.ladder[-1]
    steps, best = best_depth(probes, model, targets[0])
    direct = probes.probe_score.sel(model=model, target=targets[0]).max("layer")
    np.testing.assert_allclose(best.values, direct.sel(step=steps).values)
    groups, values = group_cosines(data, inter, model)
    da = inter.grad_cosine_layer.sel(model=model, task=data.common_task, other_task=data.rare_task)
    expect = da.sel(step=da.step > 0).mean("step", skipna=True).transpose("seed", "param_group").values
    assert groups == [str(g) for g in inter.param_group.values]
    np.testing.assert_allclose(values, expect)
