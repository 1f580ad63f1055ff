"""Experiments: configs, data, models, runs (resume after SIGKILL, divergence), reports, CLI."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import skip_without_debian_data

from curvlab import Objective
from curvlab.data import MissingSource, load_dataset
from curvlab.data.base import require
from curvlab.experiments import ConfigError, load_config, resume_run, start_run, validate
from curvlab.experiments.build import lr_factor
from curvlab.experiments.config import to_toml
from curvlab.experiments.report import write_report
from curvlab.models import build_model
from curvlab.monitor import read_records

ROOT = Path(__file__).resolve().parent.parent
SMALL = {
    "name": "small",
    "seed": 3,
    "data": {"name": "digits", "subset": 256},
    "model": {"name": "mlp", "width": 16, "depth": 1},
    "optimizer": {"name": "sgd", "lr": 0.3, "momentum": 0.9},
    "train": {"batch_size": 64, "steps": 24, "checkpoint_every": 4},
    "monitor": {
        "metrics": ["assumptions", "sharpness", "directional", "noise"],
        "schedules": {"sharpness": 6, "directional": 8, "noise": [24]},
    },
}


def _config(**overrides):
    import copy

    c = copy.deepcopy(SMALL)
    for dotted, value in overrides.items():
        section, _, key = dotted.rpartition(".")
        (c.setdefault(section, {}) if section else c)[key] = value
    return c


# ----- configs ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "path",
    sorted((ROOT / "examples").glob("*.toml")) + sorted((ROOT / "src/curvlab/experiments/configs").glob("*.toml")),
)
def test_shipped_configs_validate_and_round_trip(path, tmp_path):
    if "[sweep]" in path.read_text():
        from curvlab.experiments.sweep import load_sweep

        config, sweep = load_sweep(path)
        assert sweep["kind"] in ("grid", "lr_search", "batch_ladder")
    else:
        config = load_config(path)
    (tmp_path / "c.toml").write_text(to_toml(config))
    assert load_config(tmp_path / "c.toml") == config


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        ({"optimizer.lrr": 0.1}, "optimizer.lrr"),
        ({"train.epoch": 3}, "train.epoch"),
        ({"colour": "red"}, "colour"),
        ({"optimizer.lr": "fast"}, "optimizer.lr"),
        ({"optimizer.lr": -1.0}, "optimizer.lr"),
        ({"train.batch_size": "half"}, "train.batch_size"),
        ({"train.epochs": 2}, "train"),
        ({"schedule.kind": "exponential"}, "schedule.kind"),
        ({"monitor.bn_mode": "frozen"}, "monitor.bn_mode"),
        ({"data.subset": 0}, "data.subset"),
        ({"train.eval_every": 0}, "train.eval_every"),
        ({"seed": True}, "seed"),
        ({"tuner.name": "cdat", "train.processes": 2}, "train.processes"),
        ({"train.parallel": "deepspeed", "train.processes": 2}, "train.parallel"),
        ({"train.parallel": "fsdp"}, "train.parallel"),  # one process: nothing to shard over
        ({"train.parallel": "fsdp", "train.processes": 2, "tuner.name": "linesearch"}, "tuner"),
        ({"train.parallel": "fsdp", "train.processes": 2, "monitor.metrics": ["assumptions"]}, "['assumptions']"),
    ],
)
def test_bad_configs_are_one_line_errors_naming_the_key(overrides, fragment):
    with pytest.raises(ConfigError) as err:
        validate(_config(**overrides))
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_tuners_without_curvature_are_allowed_on_several_processes():
    assert validate(_config(**{"tuner.name": "linesearch", "train.processes": 2}))["train"]["processes"] == 2


def test_missing_required_keys_and_constructor_errors_name_the_key(tmp_path):
    bad = _config()
    del bad["optimizer"]["lr"]
    with pytest.raises(ConfigError, match="optimizer.lr: required"):
        validate(bad)
    with pytest.raises(ConfigError, match="config: optimizer"):
        start_run(_config(**{"optimizer.momentum": -0.5}), tmp_path / "a", quiet=True)
    with pytest.raises(ConfigError, match="config: model"):
        start_run(_config(**{"model.activation": "swishy"}), tmp_path / "b", quiet=True)
    with pytest.raises(ConfigError, match="unknown optimizer"):  # caught on load
        start_run(_config(**{"optimizer.name": "lion"}), tmp_path / "c", quiet=True)


def test_lr_schedules():
    const = {"kind": "constant", "warmup_steps": 0, "decay_every_epochs": None, "min_lr_fraction": 0.0}
    assert lr_factor(const, 50, 3, 100) == 1.0
    warm = dict(const, kind="warmup_linear", warmup_steps=10)
    assert lr_factor(warm, 0, 0, 110) == pytest.approx(0.1) and lr_factor(warm, 9, 0, 110) == 1.0
    assert lr_factor(warm, 60, 0, 110) == pytest.approx(0.5)
    cos = dict(const, kind="warmup_cosine", warmup_steps=0, min_lr_fraction=0.1)
    assert lr_factor(cos, 0, 0, 100) == pytest.approx(1.0) and lr_factor(cos, 100, 0, 100) == pytest.approx(0.1)
    step = dict(const, kind="step", decay_every_epochs=2)
    assert lr_factor(step, 0, 3, 10) == pytest.approx(0.1) and lr_factor(step, 0, 4, 10) == pytest.approx(0.01)


# ----- data and models ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, shape, task",
    [
        ("digits", (64,), "classification"),
        ("mnist", (1, 28, 28), "classification"),
        ("mnist1d", (40,), "classification"),
        ("least_squares", (20,), "regression"),
    ],
)
def test_offline_sources_load_with_deterministic_subsets(name, shape, task):
    a, b = load_dataset(name, subset=50, seed=4), load_dataset(name, subset=50, seed=4)
    assert a.input_shape == shape and a.task == task and a.n_train == 50
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_train, b.y_train)
    assert not torch.equal(a.x_train, load_dataset(name, subset=50, seed=5).x_train)


@pytest.mark.parametrize(
    "name, options, shape, task, classes",
    [
        ("fashion_mnist", {}, (1, 28, 28), "classification", 10),
        ("kjv", {"n_sequences": 40, "context": 32}, (32,), "language_model", None),
        ("kjv", {"level": "word", "n_sequences": 20, "vocab_size": 500}, (64,), "language_model", 500),
        ("austen", {"n_sequences": 30, "context": 16}, (16,), "language_model", None),
        ("english_words", {"n_sequences": 30}, (35,), "language_model", 10000),
        ("uci", {"table": "letter"}, (16,), "classification", 26),
        ("uci", {"table": "satellite"}, (36,), "classification", 6),
    ],
)
def test_debian_packaged_sources(name, options, shape, task, classes):
    try:
        d = load_dataset(name, seed=0, **options)
    except MissingSource as err:
        skip_without_debian_data(str(err))
        raise
    assert d.input_shape == shape and d.task == task and (classes is None or d.n_classes == classes)
    if task == "language_model":
        assert torch.equal(d.x_train[:, 1:], d.y_train[:, :-1]) and int(d.x_train.max()) < d.n_classes
    else:
        assert d.x_test is not None and int(d.y_train.max()) < d.n_classes


@pytest.mark.parametrize(
    "level, options", [("char", {"context": 32}), ("word", {"vocab_size": 500}), ("bpe", {"vocab_size": 500})]
)
def test_python_docs_is_text_for_language_models_without_apt(level, options, monkeypatch, tmp_path):
    """The Python language reference (pydoc_data) loads where no Debian data is (CURVLAB_DATA empty): next-token
    windows, targets the inputs shifted by one, a test set from the text's end, the same for the same seed."""
    monkeypatch.setenv("CURVLAB_DATA", str(tmp_path))
    d = load_dataset("python_docs", level=level, n_sequences=40, seed=1, **options)
    assert d.task == "language_model" and d.name == f"python_docs_{level}" and d.n_train == 40
    assert torch.equal(d.x_train[:, 1:], d.y_train[:, :-1]) and int(d.x_train.max()) < d.n_classes
    assert d.x_test is not None and len(d.x_test) > 0
    assert torch.equal(d.x_train, load_dataset("python_docs", level=level, n_sequences=40, seed=1, **options).x_train)


def test_the_english_word_corpus_holds_over_a_million_words():
    """Issue 31, item 5: a word-level English corpus of ≥ 1M words for the language-model reproductions."""
    try:
        d = load_dataset("english_words", vocab_size=10000, context=35)
    except MissingSource as err:
        skip_without_debian_data(str(err))
        raise
    tokens = d.x_train.numel() + d.x_test.numel()
    assert tokens > 1_000_000 and d.n_classes == 10000
    assert d.n_train > 25_000  # sequences of 35 the paper's PTB setting trains on


def test_a_missing_debian_package_is_named():
    from curvlab.data.debian import find

    with pytest.raises(MissingSource, match="Debian package dataset-nothing"):
        find("usr/share/datasets/nothing/at-all.gz", "dataset-nothing")


def test_missing_sources_say_what_to_install_or_give():
    with pytest.raises(MissingSource, match="pip install nothere"):
        require("curvlab_no_such_module", "nothere: pip install nothere")
    with pytest.raises(FileNotFoundError, match="CIFAR-10"):
        load_dataset("cifar10")
    with pytest.raises(FileNotFoundError, match="path"):
        load_dataset("arrays", path="/nonexistent/data.npz")
    with pytest.raises(ValueError, match="dataset"):
        load_dataset("imagenet")
    with pytest.raises(ValueError, match="subset"):
        load_dataset("digits", subset=10**6)


def test_user_image_folder_source(tmp_path):
    import numpy as np
    from PIL import Image

    for c, name in enumerate(["cat", "dog"]):
        (tmp_path / "pets" / name).mkdir(parents=True)
        for i in range(5):
            Image.fromarray(np.full((6, 6, 3), 40 * c + i, dtype=np.uint8)).save(tmp_path / "pets" / name / f"{i}.png")
    d = load_dataset("folder", path=str(tmp_path / "pets"))
    assert d.input_shape == (3, 6, 6) and d.n_classes == 2 and d.n_train == 8
    assert float(d.x_train.max()) <= 1.0
    gray = load_dataset("folder", path=str(tmp_path / "pets"), grayscale=True, size=4)
    assert gray.input_shape == (1, 4, 4)
    with pytest.raises(FileNotFoundError, match="path"):
        load_dataset("folder", path=str(tmp_path / "nothing"))


def test_user_arrays_source(tmp_path):
    import numpy as np

    np.savez(tmp_path / "mine.npz", x=np.random.rand(30, 5).astype("float32"), y=np.arange(30) % 3)
    d = load_dataset("arrays", path=str(tmp_path / "mine.npz"))
    assert d.task == "classification" and d.n_classes == 3 and d.n_train + len(d.y_test) == 30


@pytest.mark.parametrize(
    "name, options, data",
    [
        ("linear", {}, "digits"),
        ("mlp", {"layernorm": True}, "digits"),
        ("lenet", {}, "mnist"),
        ("resnet", {"norm": "group", "width": 4}, "mnist"),
        ("resnet", {"norm": "none", "width": 4}, "mnist"),
    ],
)
def test_models_are_twice_differentiable_on_the_cpu(name, options, data):
    ds = load_dataset(data, subset=6)
    model = build_model(name, ds, **options).double()
    x = ds.x_train.double()
    objs = [
        Objective(model, torch.nn.functional.cross_entropy, (x, ds.y_train), hvp_engine=e)
        for e in ("reverse", "forward")
    ]
    v = torch.randn(objs[0].dim, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    a, b = (o.hvp(v) for o in objs)
    assert torch.allclose(a, b, rtol=1e-6, atol=1e-10) and a.abs().sum() > 0


def test_transformer_lm_is_twice_differentiable_and_init_scale_scales():
    from curvlab.data import DataSet

    tokens = torch.randint(0, 11, (3, 8), generator=torch.Generator().manual_seed(0))
    ds = DataSet("toy", "language_model", tokens, torch.roll(tokens, -1, 1), n_classes=11)
    model = build_model("transformer", ds, size="tiny").double()
    from curvlab.losses import cross_entropy

    objs = [Objective(model, cross_entropy, (tokens, ds.y_train), hvp_engine=e) for e in ("reverse", "forward")]
    v = torch.randn(objs[0].dim, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert torch.allclose(objs[0].hvp(v), objs[1].hvp(v), rtol=1e-6, atol=1e-10)
    base, scaled = (
        build_model("mlp", load_dataset("digits", subset=4)),
        build_model("mlp", load_dataset("digits", subset=4), init_scale=2.0),
    )
    assert all(torch.allclose(2 * p, q) for p, q in zip(base.parameters(), scaled.parameters()))


# ----- runs ----------------------------------------------------------------------------------------------
def _comparable(run_dir):
    return [{k: v for k, v in r.items()} for r in read_records(run_dir) if r["metric"] != "cost_seconds"]


def test_a_run_writes_its_directory_and_is_deterministic(tmp_path):
    result = start_run(_config(), tmp_path / "a", quiet=True)
    assert result.status == "finished" and result.steps == 24
    for name in ("config.toml", "records.jsonl", "checkpoint.pt", "status.json"):
        assert (tmp_path / "a" / name).exists()
    assert load_config(tmp_path / "a" / "config.toml") == validate(_config())
    start_run(_config(), tmp_path / "b", quiet=True)
    assert _comparable(tmp_path / "a") == _comparable(tmp_path / "b")
    metrics = {r["metric"] for r in read_records(tmp_path / "a")}
    assert {"loss", "inst_gap", "sharpness", "directional_sharpness", "threshold"} <= metrics
    with pytest.raises(FileExistsError, match="--resume"):
        start_run(_config(), tmp_path / "a", quiet=True)
    report = write_report([tmp_path / "a"])
    html = report.read_text()
    for fig in ("loss", "sharpness", "convexity_gap", "noise", "noise_qq", "directional"):
        assert f"figures/{fig}.png" in html and (tmp_path / "a" / "figures" / f"{fig}.png").stat().st_size > 5000


def test_divergence_ends_the_run_and_keeps_the_records(tmp_path):
    config = _config(
        **{
            "data.name": "least_squares",
            "model.name": "linear",
            "optimizer.lr": 50.0,
            "optimizer.momentum": 0.0,
            "train.steps": 200,
        }
    )
    del config["model"]["width"], config["model"]["depth"]
    result = start_run(config, tmp_path / "d", quiet=True)
    assert result.status == "diverged"
    records = read_records(tmp_path / "d")
    losses = [r for r in records if r["metric"] == "loss"]
    assert losses[-1]["value"] is None and all(r["value"] is not None for r in losses[:-1])
    assert any(r["metric"] == "diverged" for r in records)
    assert json.loads((tmp_path / "d" / "status.json").read_text())["status"] == "diverged"
    assert max(r["step"] for r in records) == result.steps
    assert resume_run(tmp_path / "d", quiet=True).status == "diverged"  # nothing left to do


def test_full_batch_with_gradient_accumulation_matches_one_chunk(tmp_path):
    one = start_run(
        _config(**{"train.batch_size": "full", "train.steps": 5, "monitor.metrics": [], "monitor.schedules": {}}),
        tmp_path / "one",
        quiet=True,
    )
    acc = start_run(
        _config(
            **{
                "train.batch_size": "full",
                "train.steps": 5,
                "train.max_chunk": 64,
                "monitor.metrics": [],
                "monitor.schedules": {},
            }
        ),
        tmp_path / "acc",
        quiet=True,
    )
    assert acc.final_loss == pytest.approx(one.final_loss, rel=1e-5)


def test_a_full_batch_run_says_that_epoch_end_groups_measure_at_every_step(tmp_path, capsys):
    metrics = {"monitor.metrics": ["sharpness", "full_batch"], "monitor.schedules": {"full_batch": 2}}
    start_run(_config(**{"train.batch_size": "full", "train.steps": 2, **metrics}), tmp_path / "full")
    said = capsys.readouterr().err
    assert "every step ends an epoch" in said and "sharpness measures at every step" in said
    assert "full_batch" not in said.split("every step ends an epoch")[1].split("\n")[0]  # its schedule counts steps
    start_run(_config(**{"train.steps": 2, **metrics}), tmp_path / "minibatch")
    assert "every step ends an epoch" not in capsys.readouterr().err


def test_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path):
    config = _config(**{"train.steps": 60, "train.checkpoint_every": 7, "train.eval_every": 5})
    (tmp_path / "c.toml").write_text(to_toml(validate(config)))
    start_run(config, tmp_path / "straight", quiet=True)
    cmd = [
        sys.executable,
        "-m",
        "curvlab.cli",
        "run",
        str(tmp_path / "c.toml"),
        "--out",
        str(tmp_path / "killed"),
        "--quiet",
        "--no-report",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    records = tmp_path / "killed" / "records.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline:
        if records.exists() and any(
            json.loads(line).get("step", 0) >= 25
            for line in records.read_text().splitlines()[-5:]
            if line.endswith("}")
        ):
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert json.loads((tmp_path / "killed" / "status.json").read_text())["status"] == "running"
    done = subprocess.run(
        [sys.executable, "-m", "curvlab.cli", "run", "--resume", str(tmp_path / "killed"), "--quiet", "--no-report"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert _comparable(tmp_path / "killed") == _comparable(tmp_path / "straight")
    assert sum(r["metric"] == "validation_loss" for r in _comparable(tmp_path / "killed")) == 12  # once per 5 steps
    a = torch.load(tmp_path / "killed" / "checkpoint.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


# ----- CLI ------------------------------------------------------------------------------------------------
def _cli(*args):
    return subprocess.run([sys.executable, "-m", "curvlab.cli", *args], capture_output=True, text=True)


def test_cli_list_and_spectrum(tmp_path):
    out = _cli("list")
    assert out.returncode == 0
    for word in (
        "data sets:",
        "mnist",
        "models:",
        "transformer",
        "optimizers:",
        "sign",
        "tuners:",
        "cdat",
        "metrics (§",
        "sharpness",
    ):
        assert word in out.stdout
    start_run(_config(), tmp_path / "r", quiet=True)
    spec = _cli("spectrum", str(tmp_path / "r"), "--k", "3", "--density", str(tmp_path / "d.png"))
    assert spec.returncode == 0 and "top eigenvalues" in spec.stdout and (tmp_path / "d.png").exists()
    by_file = _cli("spectrum", str(tmp_path / "r" / "checkpoint.pt"), "--k", "3")
    assert by_file.returncode == 0 and by_file.stdout.splitlines()[1] == spec.stdout.splitlines()[1]


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["run", "nope.toml"], "no such file"),
        (["run"], "CONFIG or --resume"),
        (["run", "--resume", "/nonexistent/run"], "run_dir"),
        (["spectrum", "/nonexistent/run"], "run_dir"),
        (["report", "/nonexistent/run"], "run_dir"),
    ],
)
def test_cli_errors_are_one_line_exit_2(args, fragment):
    out = _cli(*args)
    assert out.returncode == 2 and fragment in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr


def test_cli_bad_config_key_is_one_line(tmp_path):
    (tmp_path / "bad.toml").write_text(
        '[data]\nname = "digits"\n[model]\nname = "mlp"\n[optimizer]\nname = "sgd"\nlr = 0.1\nlrr = '
        "2\n[train]\nbatch_size = 8\nsteps = 2\n"
    )
    out = _cli("run", str(tmp_path / "bad.toml"), "--out", str(tmp_path / "x"))
    assert out.returncode == 2 and "optimizer.lrr" in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_a_tuner_takes_the_accumulated_step_path(tmp_path):
    """A tuner sees the gradient every optimizer sees: with chunks (gradient accumulation) the tuned run
    follows the one-chunk run, and the recorded lr is the η the tuner wrote into the param groups."""
    runs = {}
    for name, chunk in (("one", 4096), ("acc", 64)):
        config = _config(
            **{
                "train.batch_size": "full",
                "train.steps": 4,
                "train.max_chunk": chunk,
                "tuner": {"name": "quadratically_greedy"},
                "monitor.metrics": ["step"],
                "monitor.schedules": {},
            }
        )
        start_run(config, tmp_path / name, quiet=True)
        runs[name] = {(r["step"], r["metric"]): r for r in read_records(tmp_path / name) if r["metric"] == "lr"}
    assert runs["one"].keys() == runs["acc"].keys() and len(runs["one"]) == 4
    for key, row in runs["one"].items():
        assert runs["acc"][key]["value"] == pytest.approx(row["value"], rel=1e-4)
        assert row["value"] != 0.3  # the tuner's η, not the configured base lr


def test_metric_options_come_from_the_config(tmp_path):
    config = _config(
        **{
            "monitor.metrics": ["sharpness", "trace"],
            "monitor.schedules": {"sharpness": 12, "trace": [24]},
            "monitor.options": {"sharpness": {"k": 3, "tol": 1e-4}, "trace": {"n_probes": 6, "method": "hutchinson"}},
        }
    )
    start_run(config, tmp_path / "r", quiet=True)
    records = read_records(tmp_path / "r")
    assert {r["index"] for r in records if r["metric"] == "sharpness"} == {1, 2, 3}
    assert any(r["metric"] == "trace" for r in records)
    with pytest.raises(ConfigError, match=r"monitor.options.sharpness.tolerance: unknown key; 'sharpness' takes"):
        validate(_config(**{"monitor.options": {"sharpness": {"tolerance": 1e-4}}}))
    with pytest.raises(ConfigError, match="monitor.options: .*not in monitor.metrics"):
        start_run(_config(**{"monitor.options": {"trace": {"n_probes": 4}}}), tmp_path / "bad", quiet=True)


def test_a_new_metric_needs_only_its_class(tmp_path, capsys):
    """Adding a metric is one class: the registry makes it known to configs, `curvlab list` and reports."""
    from curvlab.cli import main
    from curvlab.monitor import METRICS, Metric, register_metric

    @register_metric
    class ParameterNorm(Metric):
        name = "parameter_norm_for_test"
        description = "‖x‖ at the current point"

        def __init__(self, schedule=None, scale: float = 1.0):
            super().__init__(schedule)
            self.scale = scale

        def measure(self, monitor, info):
            yield "parameter_norm", self.scale * float(torch.linalg.vector_norm(info.x_now)), {}

    try:
        config = _config(
            **{
                "monitor.metrics": ["parameter_norm_for_test"],
                "monitor.schedules": {"parameter_norm_for_test": 6},
                "monitor.options": {"parameter_norm_for_test": {"scale": 2.0}},
            }
        )
        start_run(config, tmp_path / "r", quiet=True)
        rows = [r for r in read_records(tmp_path / "r") if r["metric"] == "parameter_norm"]
        assert [r["step"] for r in rows] == [6, 12, 18, 24] and all(r["value"] > 0 for r in rows)
        write_report([tmp_path / "r"])
        assert (tmp_path / "r" / "figures" / "parameter_norm_for_test.png").exists()
        assert main(["list"]) == 0 and "parameter_norm_for_test" in capsys.readouterr().out
    finally:
        METRICS.remove("parameter_norm_for_test")


def test_a_tuner_with_a_schedule_is_a_config_error():
    config = {
        "name": "t",
        "data": {"name": "digits", "subset": 100},
        "model": {"name": "mlp"},
        "optimizer": {"name": "sgd", "lr": 0.1},
        "tuner": {"name": "cdat"},
        "schedule": {"kind": "warmup_constant", "warmup_steps": 10},
        "train": {"batch_size": 32, "steps": 5},
    }
    with pytest.raises(ConfigError, match="overwritten"):
        validate(config)
    config["schedule"] = {"kind": "constant"}
    validate(config)
