"""Pre-registration (issue 31): every claims file is complete, every check fails on its stated contrast, the fresh
seeds run only under a committed claims file, and the reproductions page refuses a stored run whose claims changed."""

import json
import math
import shutil
import sys
from pathlib import Path

import pytest

from curvlab.errors import InputError
from curvlab.reproductions import REGISTRY, reproduce
from curvlab.reproductions import base as reproductions_base
from curvlab.reproductions.base import setting_for
from curvlab.reproductions.claims import PILOT_SEEDS, load_claims

pytestmark = pytest.mark.usefixtures("shared_training_runs")  # each training run once (conftest)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
PREREGISTERED = [name for name, rep in REGISTRY.items() if rep.preregistered]
CONTRASTS = [(name, spec.id) for name in PREREGISTERED for spec in load_claims(name).checks]


def test_at_least_one_reproduction_is_preregistered_and_each_claims_file_is_complete():
    assert PREREGISTERED
    for name in PREREGISTERED:
        claims = load_claims(name)
        assert not set(claims.seeds) & set(PILOT_SEEDS)
        assert REGISTRY[name].claim == claims.claim  # the registry states what the claims file states
        for spec in claims.checks:
            assert all(len(text) > 20 for text in (spec.quote, spec.why, spec.contrast, spec.power)), spec.id
            assert all(isinstance(v, (int, float)) for v in spec.threshold.values()), spec.id


_CONTRAST_RUNS: dict[str, dict] = {}


@pytest.mark.parametrize("name, check_id", CONTRASTS)
def test_each_check_fails_on_its_contrast(name, check_id, tmp_path):
    """The contrast run (the quick setting with the claims file's contrast changes) lacks the phenomenon: the check
    must say so. Where the phenomenon is present (the same run without the change), it must be able to pass."""
    rep, spec = REGISTRY[name], load_claims(name).check(check_id)
    setting = {**setting_for(name, "quick"), **spec.contrast_setting}
    key = json.dumps([name, setting], sort_keys=True)
    if key not in _CONTRAST_RUNS:  # checks that share a contrast share its run
        _CONTRAST_RUNS[key] = json.loads(json.dumps(rep.run(tmp_path, setting, PILOT_SEEDS[0]), default=str))
    numbers = _CONTRAST_RUNS[key]
    verdicts = {c.id: c.passed for c in rep.checks(numbers)}
    assert verdicts[check_id] is False, f"{name}: {check_id} passes on its contrast ({spec.contrast})"


def test_the_claims_loader_refuses_pilot_seeds_and_incomplete_checks(tmp_path, monkeypatch):
    from curvlab.reproductions import claims as claims_module

    source = load_claims(PREREGISTERED[0]).path.read_text()
    monkeypatch.setattr(claims_module, "CLAIMS_DIR", tmp_path)
    name = PREREGISTERED[0]
    seeds = [line for line in source.splitlines() if line.startswith("seeds =")][0]
    (tmp_path / f"{name}.toml").write_text(source.replace(seeds, "seeds = [2, 3]"))
    with pytest.raises(InputError, match="fresh non-negative seeds"):
        load_claims(name)
    (tmp_path / f"{name}.toml").write_text(source.replace("\ncontrast =", "\nuncontrasted =", 1))
    with pytest.raises(InputError, match="lacks \\['contrast'\\]"):
        load_claims(name)


def test_fresh_seeds_run_only_under_a_committed_claims_file(tmp_path, monkeypatch):
    name = "dynamical-models"
    monkeypatch.setattr(reproductions_base, "committed", lambda path: {"claims_uncommitted": True})
    with pytest.raises(InputError, match="not committed"):
        reproduce(name, tmp_path)  # the claims file's fresh seeds
    assert reproduce(name, tmp_path, seeds=PILOT_SEEDS[:1])["per_seed"]  # a pilot seed runs
    assert reproduce(name, tmp_path / "quick", scale="quick")["per_seed"]  # and so does the smoke test


def test_the_page_refuses_a_stored_run_whose_claims_changed(tmp_path, monkeypatch):
    import reproductions_doc

    name = "dynamical-models"
    claims = load_claims(name)
    monkeypatch.setattr(
        reproductions_base,
        "committed",
        lambda path: {
            "claims_commit": "f" * 40,
            "claims_committed_at": "2026-01-01T00:00:00+00:00",
            "claims_uncommitted": False,
        },
    )
    summary = reproduce(name, tmp_path / "run")
    monkeypatch.setattr(reproductions_doc, "STORED", tmp_path)
    shutil.copy(tmp_path / "run" / "numbers.json", tmp_path / f"{name}.json")
    assert reproductions_doc.validated(name)["seeds"] == list(claims.seeds)  # as run: accepted
    for change, message in (
        ({"claims_sha256": "0" * 64}, "another claims file"),
        ({"claims_uncommitted": True}, "not committed"),
        ({"claims_committed_at": "2099-01-01T00:00:00+00:00"}, "committed after the run"),
        ({"seeds": [0, 1, 2]}, "ran on seeds"),
    ):
        (tmp_path / f"{name}.json").write_text(json.dumps({**summary, **change}))
        with pytest.raises(reproductions_doc.Refused, match=message):
            reproductions_doc.validated(name)
    flipped = json.loads(json.dumps(summary))
    flipped["per_seed"][0]["checks"][0]["passed"] = not flipped["per_seed"][0]["checks"][0]["passed"]
    (tmp_path / f"{name}.json").write_text(json.dumps(flipped))
    with pytest.raises(reproductions_doc.Refused, match="score it differently"):
        reproductions_doc.validated(name)


def test_cli_lists_which_reproductions_are_preregistered():
    import subprocess

    out = subprocess.run([sys.executable, "-m", "curvlab.cli", "reproduce", "--list"], capture_output=True, text=True)
    assert out.returncode == 0
    lines = out.stdout.splitlines()
    for name in REGISTRY:
        first = next(i for i, line in enumerate(lines) if line.startswith(f"{name} "))
        said = "pre-registered, fresh seeds" if name in PREREGISTERED else "not yet pre-registered"
        assert said in lines[first + 2], (name, lines[first : first + 3])


def test_cli_scales(tmp_path, monkeypatch, capsys):
    import subprocess
    import sys

    from curvlab import cli
    from curvlab.reproductions import claims as claims_module

    scales = tmp_path / "scales.toml"  # every shipped reproduction has a paper scale: one without it, refused
    scales.write_text(claims_module.SCALES_FILE.read_text().replace("[cdat.paper]", "[cdat.other]"))
    monkeypatch.setattr(claims_module, "SCALES_FILE", scales)
    assert cli.main(["reproduce", "cdat", "--scale", "paper", "--out", str(tmp_path / "out")]) == 2
    assert "has no 'paper' setting" in capsys.readouterr().err
    cifar = subprocess.run(  # the paper scale reads CIFAR-10 from a folder the user provides: a one-line error
        [sys.executable, "-m", "curvlab.cli", "reproduce", "warmup", "--scale", "paper", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert cifar.returncode == 2 and len(cifar.stderr.strip().splitlines()) == 1 and "CIFAR-10" in cifar.stderr
    both = subprocess.run(
        [sys.executable, "-m", "curvlab.cli", "reproduce", "warmup", "--quick", "--scale", "full"],
        capture_output=True,
        text=True,
    )
    assert both.returncode == 2 and "--quick" in both.stderr


def test_the_paper_scale_estimate_covers_every_reproduction_with_a_paper_scale():
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
    import paper_scale

    with_paper = [n for n in REGISTRY if paper_scale.has_paper_scale(n)]
    assert set(PREREGISTERED) <= set(with_paper)
    rows = {row[0]: row for row in map(paper_scale.estimate, with_paper) if row is not None}
    trains_one_model = {n for n in with_paper if "model" in setting_for(n, "paper")}
    assert set(rows) == trains_one_model and {"edge-of-stability", "warmup"} <= trains_one_model
    assert all(row[-1] > 0 for row in rows.values())


STORED = Path(__file__).resolve().parent.parent / "docs" / "reproductions"


@pytest.mark.parametrize("name", [n for n in PREREGISTERED if (STORED / f"{n}.json").exists()])
def test_every_threshold_of_a_passing_check_decides_it(name, monkeypatch):
    """Each threshold in a claims file is read by its check: on a stored fresh-seed run where the check passes, some
    value of that threshold (NaN, where no comparison holds, or ±∞) makes it fail. A check whose code kept a literal
    in place of a claims threshold fails this."""
    from curvlab.reproductions import claims as claims_module

    rep = REGISTRY[name]
    module = sys.modules[rep.checks.__module__]
    runs = json.loads((STORED / f"{name}.json").read_text())["per_seed"]
    real = claims_module.thresholds
    for spec in load_claims(name).checks:
        passing = [r["numbers"] for r in runs if next(c for c in r["checks"] if c["id"] == spec.id)["passed"]]
        for key in spec.threshold if passing else ():
            decides = False
            for value in (math.nan, math.inf, -math.inf):
                table = {**real(name), spec.id: {**spec.threshold, key: value}}
                monkeypatch.setattr(module, "thresholds", lambda _name, table=table: table)
                decides |= any(not _passes(rep, numbers, spec.id) for numbers in passing)
            assert decides, f"{name}: {spec.id} passes whatever {key} is: the threshold is not read"
    monkeypatch.setattr(module, "thresholds", real)


def _passes(rep, numbers: dict, check_id: str) -> bool:
    try:
        return next(c for c in rep.checks(numbers) if c.id == check_id).passed
    except (TypeError, ValueError, OverflowError, ZeroDivisionError):  # a threshold no check can use (a NaN window)
        return False
