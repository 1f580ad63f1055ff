"""The quickstart tells the truth: its report opens with a verdict computed from the run, which these tests
check at the shipped scale (about 25 s), and the verdict says so plainly when a run did not reach the edge."""

from pathlib import Path

import pandas as pd

from curvlab.experiments.edge import edge_summary
from curvlab.experiments.quickstart import ARMS, run_quickstart

ROOT = Path(__file__).resolve().parents[1]


def test_the_quickstart_reaches_the_edge_of_stability_and_says_so(tmp_path):
    summaries = run_quickstart(tmp_path, quiet=True)
    gd, adam = summaries["gd"], summaries["adam"]
    assert gd.kind == "gd" and adam.kind == "adam_preconditioned"  # Adam is judged on its preconditioned sharpness
    for edge in (gd, adam):
        assert edge.sharpened and edge.hovered and edge.loss_fell and edge.loss_increases >= 1, edge.sentence()
    assert gd.values[0] <= 1.5 and 1.8 <= sorted(gd.after)[len(gd.after) // 2] <= 2.2  # η·λ1 from below to ≈ 2
    page = (tmp_path / "report.html").read_text()
    findings = page.index("<h2>Findings</h2>")
    assert findings < page.index("Key numbers") and page.count("Verdict: the edge of stability") == 2
    assert (tmp_path / "figures" / "edge_of_stability.png").stat().st_size > 20_000


def test_the_example_configs_are_the_quickstarts_own():
    for arm in ARMS:
        shipped = ROOT / "src" / "curvlab" / "experiments" / "configs" / f"quickstart_{arm}.toml"
        assert (ROOT / "examples" / f"quickstart_{arm}.toml").read_text() == shipped.read_text()


def _records(values, kind="gd", losses=(1.0, 0.8, 0.9, 0.5, 0.3)):
    rows = [
        {"step": 10 * (i + 1), "metric": "ratio_to_threshold", "value": v, "kind": kind} for i, v in enumerate(values)
    ]
    rows += [{"step": 10 * (i + 1), "metric": "loss", "value": v, "group": "train"} for i, v in enumerate(losses)]
    return pd.DataFrame(rows)


def test_a_run_that_never_reaches_the_edge_says_so_plainly():
    edge = edge_summary("gd", _records([0.3, 0.4, 0.5, 0.6, 0.62]))
    assert not edge.at_the_edge
    assert "peaked at 1.24 at step 50 and never reached 1.90: no edge of stability" in edge.sentence()


def test_a_run_that_starts_at_the_edge_is_not_called_sharpening():
    edge = edge_summary("gd", _records([1.0, 1.0, 0.98, 1.02, 1.0, 0.99]))
    assert edge.hovered and not edge.sharpened and not edge.at_the_edge
    assert "no sharpening from below" in edge.sentence()


def test_hovering_is_measured_after_the_edge_is_first_reached():
    edge = edge_summary(
        "adam",
        _records([0.3, 0.96, 1.5, 1.6, 1.0, 0.99], kind="adam_preconditioned", losses=(1.0, 0.8, 0.9, 0.5, 0.3, 0.2)),
    )
    assert edge.first_at_edge == 1 and edge.median_after == 1.25 and not edge.hovered
    assert "its median over the remaining 4 measurements was 1.25" in edge.sentence()


def test_the_finding_names_the_threshold_it_divides_by():
    df = _records([0.3, 0.96, 1.0, 1.02, 0.99], kind="adam_preconditioned")
    rows = [{"step": 10 * (i + 1), "metric": "threshold", "value": 3800.0, "lr": 0.01} for i in range(5)]
    edge = edge_summary("adam", pd.concat([df, pd.DataFrame(rows)]))
    assert edge.label == "preconditioned λ1 / (38/η)"
    assert "(the threshold: (2 + 2β1)/((1 − β1)η) = 38/η = 3800 at η = 0.01)" in edge.sentence()
