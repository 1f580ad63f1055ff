"""The Lightning and Hugging Face callbacks, with the real packages: bit-identical training, the Monitor's
records after fit, scalars in the trainers' own logs, and the model's own loss measured correctly."""

from __future__ import annotations

import pytest
import torch
from conftest import assert_no_placeholders
from ranks import install_impatient_clock, retry_spawn_abort, run_torchrun
from torch import nn
from zoo import TokenDataset

import curvlab
from curvlab.monitor import Sharpness, StepStats, every

L = pytest.importorskip("lightning")
transformers = pytest.importorskip("transformers")

from trainers import Classifier, classification_data, quiet_trainer, quiet_training_args  # noqa: E402

from curvlab.integrations.lightning import CurvlabCallback as LightningCallback  # noqa: E402
from curvlab.integrations.transformers import CurvlabCallback as HFCallback  # noqa: E402


class MemoryLogger(L.pytorch.loggers.Logger):
    """A Lightning logger that keeps what it is given."""

    def __init__(self):
        super().__init__()
        self.rows: list[tuple[int, dict]] = []

    name, version = "memory", 0

    @property
    def experiment(self):
        return None

    def log_metrics(self, metrics, step=None):
        self.rows.append((step, dict(metrics)))

    def log_hyperparams(self, params, *args, **kwargs):
        pass


def _lightning_fit(callback, steps=8, accumulate=1):
    L.seed_everything(0, verbose=False)
    x, y = classification_data()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16, shuffle=True)
    module, logger = Classifier(), MemoryLogger()
    trainer = quiet_trainer(
        max_steps=steps,
        logger=logger,
        accumulate_grad_batches=accumulate,
        log_every_n_steps=1,
        callbacks=[callback] if callback else [],
    )
    trainer.fit(module, loader)
    return module, logger, (x, y)


@pytest.mark.parametrize("accumulate", [1, 2])
def test_lightning_callback_is_invisible_to_training_and_logs_through_the_trainer(accumulate, tmp_path):
    plain, _, data = _lightning_fit(None, accumulate=accumulate)
    callback = LightningCallback(data, metrics=[StepStats(), Sharpness(schedule=every(2))], run_dir=tmp_path)
    watched, logger, _ = _lightning_fit(callback, accumulate=accumulate)
    for p, q in zip(plain.parameters(), watched.parameters()):
        assert torch.equal(p, q)
    assert watched.training  # the module's mode is left alone
    records = callback.monitor.records
    assert [r["step"] for r in records if r["metric"] == "loss"] == list(range(1, 9))  # one per optimizer step
    assert [r["step"] for r in records if r["metric"] == "sharpness"] == [2, 4, 6, 8]
    assert any(r["metric"] == "preconditioned_sharpness" for r in records)  # Adam's
    logged = {k for _, metrics in logger.rows for k in metrics}
    assert {"curvlab/loss", "curvlab/sharpness/1", "curvlab/grad_norm"} <= logged
    assert (tmp_path / "records.jsonl").exists()


def test_lightning_training_step_loss_is_the_loss_measured():
    module, _, (x, y) = _lightning_fit(None, steps=2)
    from curvlab.integrations.lightning import TrainingStepLoss

    own = curvlab.Objective(TrainingStepLoss(module), None, (x, y), batch_size=16)
    given = curvlab.Objective(module, nn.functional.cross_entropy, (x, y), batch_size=16)
    assert own.loss() == pytest.approx(given.loss(), rel=1e-6)
    v = torch.randn(given.dim, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(own.hvp(v), given.hvp(v), rtol=1e-4, atol=1e-6)
    assert "log" not in vars(module)  # the silenced self.log is restored


def _hf_train(with_callback, tmp_path, steps=6):
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        vocab_size=32, n_positions=16, n_embd=16, n_layer=1, n_head=2, bos_token_id=0, eos_token_id=0
    )
    model = transformers.GPT2LMHeadModel(config)
    ids = torch.randint(0, 32, (32, 12), generator=torch.Generator().manual_seed(1))
    args = quiet_training_args(tmp_path / "hf", steps, logging_steps=2)
    trainer = transformers.Trainer(model=model, args=args, train_dataset=TokenDataset(ids))
    callback = None
    if with_callback:
        data = [{"input_ids": ids[:16], "labels": ids[:16]}]
        callback = HFCallback(
            data, metrics=[StepStats(), Sharpness(schedule=every(2))], run_dir=tmp_path / "run"
        ).attach(trainer)
    trainer.train()
    return model, trainer, callback


def test_hugging_face_callback_is_invisible_to_training_and_logs_through_the_trainer(tmp_path):
    plain, _, _ = _hf_train(False, tmp_path)
    watched, trainer, callback = _hf_train(True, tmp_path)
    for p, q in zip(plain.parameters(), watched.parameters()):
        assert torch.equal(p, q)
    assert watched.training
    records = callback.monitor.records
    assert [r["step"] for r in records if r["metric"] == "sharpness"] == [2, 4, 6]
    assert len([r for r in records if r["metric"] == "grad_norm"]) == 6  # gradients read before they are zeroed
    assert any(r["metric"] == "preconditioned_sharpness" for r in records)  # AdamW, unwrapped from accelerate
    logged = [h for h in trainer.state.log_history if "curvlab/sharpness/1" in h]
    assert [h["step"] for h in logged] == [2, 4, 6]
    lam = [r["value"] for r in records if r["metric"] == "sharpness"]
    assert [h["curvlab/sharpness/1"] for h in logged] == pytest.approx(lam)
    trainer_logs = [h for h in trainer.state.log_history if "loss" in h and "grad_norm" in h]
    for metric, key in (("loss", "loss"), ("grad_norm_before_clipping", "grad_norm")):  # what the Trainer logged
        rows = [r for r in records if r["metric"] == metric and r["group"] == "trainer"]
        assert [r["step"] for r in rows] == [h["step"] for h in trainer_logs] == [2, 4, 6]
        assert [r["value"] for r in rows] == pytest.approx([h[key] for h in trainer_logs])
    assert not any("curvlab/loss" in h for h in trainer.state.log_history)  # not echoed back to the Trainer
    from curvlab.experiments.report import write_report

    page = write_report([tmp_path / "run"]).read_text()  # `curvlab report` reads a callback run's records
    assert "steps seen in the records" in page  # no status.json outside `curvlab run`: what is known instead
    assert_no_placeholders(page)


def test_lightning_callback_under_ddp_measures_the_whole_set_on_the_trainers_process_group(tmp_path):
    """Two CPU processes (gloo): each rank measures its half of the set and the products are all-reduced, so the
    last λ1 equals a single-process Lanczos on the whole set at the final weights; rank 0 alone writes."""
    import json

    L.seed_everything(0, verbose=False)
    x, y = classification_data()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)

    def launch(attempt: int):
        L.seed_everything(0, verbose=False)
        module = Classifier()
        callback = LightningCallback(
            (x, y),
            metrics=[StepStats(), Sharpness(schedule=every(4), tol=1e-8, preconditioned=False)],
            run_dir=tmp_path / f"run{attempt}",
        )
        trainer = quiet_trainer(max_steps=4, devices=2, strategy="ddp_spawn", callbacks=[callback])
        trainer.fit(module, loader)
        return module, tmp_path / f"run{attempt}"

    module, run_dir = retry_spawn_abort(launch)
    rows = [json.loads(line) for line in (run_dir / "records.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["metric"] == "loss"] == [1, 2, 3, 4]  # one writer, no duplicates
    measured = [r["value"] for r in rows if r["metric"] == "sharpness"]
    assert len(measured) == 1 and rows[0]["n_measure"] == 64  # both halves counted
    whole = curvlab.eigs(curvlab.Objective(module, nn.functional.cross_entropy, (x, y)).hessian(), tol=1e-8)
    assert measured[0] == pytest.approx(float(whole.eigenvalues[0]), rel=1e-4)


class DigitsMLP(L.LightningModule):
    """The reported case: an MLP on the digits, plain SGD."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(64, 32), nn.Tanh(), nn.Linear(32, 10))

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.cross_entropy(self(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class ImpatientOnRank1(LightningCallback):
    """The default callback, with rank 1's budget clock allowing a measurement at every step; each rank saves its
    records at the end."""

    def on_fit_start(self, trainer, pl_module):
        super().on_fit_start(trainer, pl_module)
        if trainer.global_rank == 1:
            install_impatient_clock(self.monitor)

    def on_fit_end(self, trainer, pl_module):
        super().on_fit_end(trainer, pl_module)
        rows = [(r["step"], r["metric"]) for r in self.monitor.records if not r["metric"].startswith("cost_")]
        torch.save(rows, self.run_dir / f"rows{trainer.global_rank}.pt")


def test_the_default_lightning_callback_finishes_under_ddp_with_disagreeing_clocks(tmp_path):
    """The reported deadlock: the default (budget-scheduled) callback under ddp_spawn, each rank deciding from its
    own clock when to measure. Rank 1's clock here wants a measurement at every step; the decisions are rank 0's,
    shared, so both ranks measure at the same steps and fit finishes (a deadlock fails after 60 s)."""
    from datetime import timedelta

    from sklearn.datasets import load_digits

    bunch = load_digits()
    x, y = torch.tensor(bunch.data / 16.0, dtype=torch.float32), torch.tensor(bunch.target)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=64, shuffle=True)

    def launch(attempt: int):
        run_dir = tmp_path / f"run{attempt}"
        callback = ImpatientOnRank1((x[:512], y[:512]), loss_fn=nn.functional.cross_entropy, run_dir=run_dir)
        trainer = quiet_trainer(
            max_steps=600,
            devices=2,
            strategy=L.pytorch.strategies.DDPStrategy(start_method="spawn", timeout=timedelta(seconds=60)),
            callbacks=[callback],
        )
        L.seed_everything(0, verbose=False)
        trainer.fit(DigitsMLP(), loader)
        return run_dir

    run_dir = retry_spawn_abort(launch)
    rows0, rows1 = (torch.load(run_dir / f"rows{r}.pt") for r in (0, 1))
    assert rows0 == rows1
    loss_steps = [step for step, metric in rows0 if metric == "loss"]
    assert loss_steps[0] == 1 and loss_steps == sorted(set(loss_steps))  # paced by rank 0's budget, from step 1
    assert 1 <= len([step for step, metric in rows0 if metric == "sharpness"]) < 100  # rank 0's budget paced them


def test_the_default_hugging_face_callback_finishes_under_a_two_process_trainer(tmp_path):
    """The default Hugging Face callback under torchrun (2 CPU processes, gloo, DDP), rank 0's clock wanting a
    measurement at every step and rank 1's real clock none yet: both ranks measure at the same steps and training
    finishes (a deadlock fails on the Trainer's 60 s collective timeout)."""
    import json
    from pathlib import Path

    script = Path(__file__).parent / "scripts" / "hf_two_processes.py"
    out = run_torchrun([str(script), str(tmp_path)], world=2)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [json.loads((tmp_path / f"rows{r}.json").read_text()) for r in (0, 1)]
    assert rows[0] == rows[1]
    assert [step for step, metric in rows[0] if metric == "preconditioned_sharpness"] == [1, 2, 3, 4, 5, 6]  # AdamW


def test_the_lightning_callback_measures_an_fsdp2_model_without_changing_its_training(tmp_path):
    """Lightning's ModelParallelStrategy (FSDP2 applied in ``configure_model``) on 2 CPU processes under torchrun: the
    callback measures λ1 and the preconditioned λ1 of AdamW from each rank's shards every 4 steps, and the run ends
    at exactly the parameters of the same run without the callback."""
    import json
    from pathlib import Path

    from ranks import run_torchrun

    script = Path(__file__).parent / "scripts" / "lightning_fsdp.py"
    for mode in ("with", "without"):
        done = run_torchrun([str(script), str(tmp_path), mode], 2)
        assert done.returncode == 0, done.stderr[-3000:]
    monitored, plain = torch.load(tmp_path / "with.pt"), torch.load(tmp_path / "without.pt")
    assert monitored.keys() == plain.keys() and all(torch.equal(monitored[k], plain[k]) for k in plain)
    rows = json.loads((tmp_path / "rows.json").read_text())
    for metric in ("sharpness", "preconditioned_sharpness"):
        measured = [(step, value) for step, name, value in rows if name == metric]
        assert [step for step, _ in measured] == [4, 8] and all(value > 0 for _, value in measured)


def test_the_hugging_face_callback_refuses_metrics_that_need_the_steps_batch():
    from curvlab.monitor import Directional

    for metrics in (["assumptions"], ["sharpness", Directional()]):
        with pytest.raises(ValueError, match="does not pass"):
            HFCallback([{"input_ids": torch.zeros(1, 4, dtype=torch.long)}], metrics=metrics)
    HFCallback([{"input_ids": torch.zeros(1, 4, dtype=torch.long)}], metrics=["sharpness", "trace"])  # these are fine


@pytest.mark.parametrize("make", [LightningCallback, HFCallback])
def test_both_callbacks_check_their_arguments_when_made(make):
    data = [{"input_ids": torch.zeros(1, 4, dtype=torch.long)}]
    with pytest.raises(TypeError, match="data"):
        make("runs/measure.pt")
    with pytest.raises(ValueError, match="tensorbord"):  # a misspelt option names itself, before any fit
        make(data, tensorbord=True)
    with pytest.raises(TypeError):  # one argument order: everything after data is keyword-only
        make(data, None)
    callback = make(data, tensorboard=True, run_dir="runs/x", batch_size=2)  # the Monitor's and the Objective's
    assert callback.sinks["tensorboard"] and callback.objective_options == {"batch_size": 2}


@pytest.mark.parametrize("make", [LightningCallback, HFCallback])
def test_both_callbacks_refuse_gauss_newton_and_fisher_without_a_loss_fn_when_made(make):
    """Measuring the model's own loss (loss_fn=None) there is no split of outputs and loss: the Gauss–Newton and
    the Fisher are refused when the callback is made, not at the first measurement in the middle of fit."""
    from curvlab.monitor import BlockSharpness, Curvatures

    data = [{"input_ids": torch.zeros(1, 4, dtype=torch.long)}]
    for metrics in (
        ["curvatures"],
        [Curvatures(curvatures=("hessian", "fisher_mc"))],
        [BlockSharpness(curvature="ggn")],
    ):
        with pytest.raises(ValueError, match="loss_fn"):
            make(data, metrics=metrics)
    make(data, metrics=[Curvatures(curvatures=("hessian",))])  # the Hessian needs no split
    make(data, loss_fn=nn.functional.cross_entropy, metrics=["curvatures"])


def test_a_monitor_of_the_models_own_loss_refuses_gauss_newton_and_fisher():
    class OwnLoss(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(4, 2)

        def forward(self, x, y):
            return nn.functional.mse_loss(self.linear(x), y)

    model = OwnLoss()
    objective = curvlab.Objective(model, None, [(torch.zeros(2, 4), torch.zeros(2, 2))])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="loss_fn"):
        curvlab.Monitor(objective, optimizer, metrics=["curvatures"])
    curvlab.Monitor(objective, optimizer, metrics=["sharpness"])


BLOCK_LIGHTNING = """
import importlib.abc, sys

class NoLightning(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "lightning" or name.startswith("lightning."):
            raise ModuleNotFoundError(f"No module named {name!r}")

sys.meta_path.insert(0, NoLightning())
"""

FIT_WITH_PYTORCH_LIGHTNING = """
import torch, pytorch_lightning as pl
from curvlab.integrations.lightning import CurvlabCallback
from curvlab.monitor import StepStats

assert issubclass(CurvlabCallback, pl.Callback)
g = torch.Generator().manual_seed(0)
x, y = torch.randn(32, 8, generator=g), torch.randint(0, 3, (32,), generator=g)

class Module(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Linear(8, 3)

    def training_step(self, batch, batch_idx):
        return torch.nn.functional.cross_entropy(self.net(batch[0]), batch[1])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

callback = CurvlabCallback((x, y), metrics=[StepStats()])
trainer = pl.Trainer(callbacks=[callback], max_steps=3, accelerator="cpu", logger=False,
                     enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
trainer.fit(Module(), torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8))
print("steps", sorted({r["step"] for r in callback.monitor.records if r["metric"] == "loss"}))
"""


@pytest.mark.parametrize("lightning_installed", [True, False], ids=["both packages", "pytorch_lightning only"])
def test_the_lightning_callback_works_with_the_pytorch_lightning_package(lightning_installed):
    """Under the standalone package name too: with `lightning` installed beside it, and with only
    `pytorch_lightning` (the `lightning` import blocked), the callback measures a pytorch_lightning.Trainer's fit."""
    pytest.importorskip("pytorch_lightning")
    import subprocess
    import sys

    script = ("" if lightning_installed else BLOCK_LIGHTNING) + FIT_WITH_PYTORCH_LIGHTNING
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "steps [1, 2, 3]" in done.stdout


def test_the_lightning_callback_says_what_to_install_without_either_package():
    import subprocess
    import sys

    blocker = BLOCK_LIGHTNING.replace(
        'name == "lightning" or name.startswith("lightning.")',
        'name.split(".")[0] in ("lightning", "pytorch_lightning")',
    )
    done = subprocess.run(
        [sys.executable, "-c", blocker + "import curvlab.integrations.lightning"], capture_output=True, text=True
    )
    assert done.returncode != 0
    assert "pip install lightning (or pytorch-lightning)" in done.stderr


class NormBeforeClipping(L.Callback):
    """The test's own record of the gradient norm Lightning clips, taken in the same hook by torch's own norm."""

    def __init__(self):
        self.norms: list[float] = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        grads = [p.grad for p in pl_module.parameters() if p.grad is not None]
        self.norms.append(float(torch.nn.utils.get_total_norm(grads)))


def test_the_lightning_callback_records_the_gradient_norm_before_clipping():
    L.seed_everything(0, verbose=False)
    x, y = classification_data()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)
    own, callback = NormBeforeClipping(), LightningCallback((x, y), metrics=[StepStats()])
    trainer = quiet_trainer(max_steps=4, gradient_clip_val=0.05, log_every_n_steps=2, callbacks=[own, callback])
    trainer.fit(Classifier(), loader)
    records = callback.monitor.records
    before = {r["step"]: r["value"] for r in records if r["metric"] == "grad_norm_before_clipping"}
    after = {r["step"]: r["value"] for r in records if r["metric"] == "grad_norm"}
    assert sorted(before) == [2, 4]  # the steps the trainer logs
    for step, value in before.items():
        assert value == pytest.approx(own.norms[step - 1], rel=1e-6)
        assert value > 0.05 >= after[step] - 1e-6  # clipped: the step used a gradient of norm 0.05
    assert all(r["group"] == "trainer" for r in records if r["metric"] == "grad_norm_before_clipping")
