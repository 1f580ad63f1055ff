"""A peer's problem set, with the peer as oracle: curvlinops' kinds of problems (cross-entropy, squared error and
binary cross-entropy losses, a CNN, tied and frozen weights, batches of uneven sizes, sequence outputs with
PyTorch's class axis, padding), each measured by curvlab and by curvlinops, both as dense float64 matrices.

Where the conventions agree the matrices agree to rounding: Hessian, Gauss–Newton, and the empirical Fisher of
single-output losses. Where they differ, by the documented factor: curvlinops' empirical Fisher of a C-output
squared error or binary cross-entropy is C times curvlab's (curvlab's ℓᵢ is the example's loss as ``loss_fn``
gives it on a batch of one, a mean over its C outputs; curvlinops' the sum over them, scaled by the reduction:
docs/which-curvature.md). The Monte Carlo Fisher averages to the Gauss–Newton matrix for every likelihood.
"""

from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F
from conftest import rel_err
from curvlinops import EFLinearOperator, GGNLinearOperator, HessianLinearOperator
from torch import nn

import curvlab
from curvlab.errors import InputError
from curvlab.losses import cross_entropy

DT = torch.float64
SIZES = (7, 5, 8)  # uneven batches


class Tied(nn.Module):
    """One weight used twice (a tied encoder and decoder): its gradient sums both uses."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(4, 3, bias=False)
        self.hidden = nn.Linear(3, 3)

    def forward(self, x):
        return torch.tanh(self.hidden(self.embed(x))) @ self.embed.weight


class SequenceModel(nn.Module):
    """Per-position logits of a toy sequence model: (N, T, V), or PyTorch's class axis (N, V, T)."""

    def __init__(self, vocab: int, classes_on_axis_1: bool):
        super().__init__()
        self.mix = nn.Linear(3, 4)
        self.head = nn.Linear(4, vocab)
        self.classes_on_axis_1 = classes_on_axis_1

    def forward(self, x):  # x: (N, T, 3)
        logits = self.head(torch.tanh(self.mix(x) + self.mix(x).mean(dim=1, keepdim=True)))
        return logits.transpose(1, 2) if self.classes_on_axis_1 else logits


def _batches(inputs_shape, targets_fn, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(n, *inputs_shape, generator=g, dtype=DT), targets_fn(n, g)) for n in SIZES]


def _labels(classes, *shape):
    return lambda n, g: torch.randint(0, classes, (n, *shape), generator=g)


def problem(name: str):
    """(model, loss_fn, batches) of one problem of the set."""
    torch.manual_seed(0)
    mlp = lambda out: nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, out)).to(DT)  # noqa: E731
    if name == "cross_entropy":
        return mlp(3), nn.CrossEntropyLoss(), _batches((4,), _labels(3))
    if name == "mse":
        return mlp(3), nn.MSELoss(), _batches((4,), lambda n, g: torch.randn(n, 3, generator=g, dtype=DT))
    if name == "bce":
        return mlp(3), nn.BCEWithLogitsLoss(), _batches((4,), lambda n, g: _labels(2, 3)(n, g).to(DT))
    if name == "cnn":
        model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Tanh(), nn.Flatten(), nn.Linear(2 * 3 * 3, 3)).to(DT)
        return model, nn.CrossEntropyLoss(), _batches((1, 5, 5), _labels(3))
    if name == "tied":
        return Tied().to(DT), nn.MSELoss(), _batches((4,), lambda n, g: torch.randn(n, 4, generator=g, dtype=DT))
    if name == "frozen":
        model = mlp(3)
        model[0].requires_grad_(False)
        return model, nn.CrossEntropyLoss(), _batches((4,), _labels(3))
    if name == "sequence_class_axis":  # PyTorch's (N, C, T) with C != T
        return SequenceModel(5, True).to(DT), nn.CrossEntropyLoss(), _batches((6, 3), _labels(5, 6))
    if name == "sequence_square":  # C = T: sampling over the wrong axis would still run
        return SequenceModel(6, True).to(DT), nn.CrossEntropyLoss(), _batches((6, 3), _labels(6, 6))
    raise KeyError(name)


PROBLEMS = ["cross_entropy", "mse", "bce", "cnn", "tied", "frozen", "sequence_class_axis", "sequence_square"]
OUTPUTS = {"mse": 3, "bce": 3, "tied": 4}  # outputs per example of the multi-output regressions and classifiers


def trainable(model):
    return [p for p in model.parameters() if p.requires_grad]


def dense_curvlinops(operator_class, model, loss_fn, batches, **kw):
    params = trainable(model)
    op = operator_class(model, loss_fn, params, batches, **kw)
    return op @ torch.eye(sum(p.numel() for p in params), dtype=DT)


def dense(op):
    eye = torch.eye(op.dim, dtype=DT)
    return torch.stack([op(eye[i]) for i in range(op.dim)], dim=1)


@pytest.mark.parametrize("name", PROBLEMS)
def test_hessian_and_gauss_newton_equal_curvlinops(name):
    model, loss_fn, batches = problem(name)
    objective = curvlab.Objective(model, loss_fn, batches)
    assert objective.dim == sum(p.numel() for p in trainable(model))  # tied counted once, frozen left out
    assert rel_err(dense(objective.hessian()), dense_curvlinops(HessianLinearOperator, model, loss_fn, batches)) < 1e-12
    assert rel_err(dense(objective.ggn()), dense_curvlinops(GGNLinearOperator, model, loss_fn, batches)) < 1e-12


@pytest.mark.parametrize("name", [p for p in PROBLEMS if not p.startswith("sequence")])
def test_empirical_fisher_equals_curvlinops_up_to_the_documented_factor(name):
    model, loss_fn, batches = problem(name)
    ours = dense(curvlab.Objective(model, loss_fn, batches).fisher("empirical"))
    theirs = dense_curvlinops(EFLinearOperator, model, loss_fn, batches)
    assert rel_err(OUTPUTS.get(name, 1) * ours, theirs) < 1e-12


def test_empirical_fisher_of_sequences_takes_each_sequence_as_one_example():
    """curvlab: (1/N) Σₙ ∇ℓₙ ∇ℓₙᵀ, ℓₙ the mean loss over a sequence's T positions. curvlinops takes each position
    as a data point, (1/(N T)) Σₙₜ ∇ℓₙₜ ∇ℓₙₜᵀ: no factor relates the two (the cross terms between positions), so
    each is checked against its own formula, computed here from per-position gradients."""
    model, loss_fn, batches = problem("sequence_class_axis")
    params = trainable(model)
    per_sequence, per_position = [], []
    for x, y in batches:
        for i in range(len(y)):
            out = model(x[i : i + 1])
            grads = [
                torch.cat(
                    [
                        g.reshape(-1)
                        for g in torch.autograd.grad(loss_fn(out[..., t], y[i : i + 1, t]), params, retain_graph=True)
                    ]
                )
                for t in range(y.shape[1])
            ]
            per_position += grads
            per_sequence.append(torch.stack(grads).mean(dim=0))
    ours, theirs = torch.stack(per_sequence), torch.stack(per_position)
    objective = curvlab.Objective(model, loss_fn, batches)
    assert rel_err(dense(objective.fisher("empirical")), ours.T @ ours / len(ours)) < 1e-12
    curvlinops_ef = dense_curvlinops(EFLinearOperator, model, loss_fn, batches)
    assert rel_err(curvlinops_ef, theirs.T @ theirs / len(theirs)) < 1e-12


@pytest.mark.parametrize("name", ["cross_entropy", "mse", "bce", "sequence_class_axis", "sequence_square"])
def test_monte_carlo_fisher_averages_to_curvlinops_gauss_newton(name):
    """4,000 draws per example: a sampling error of a few per cent, where sampling the classes on the wrong axis
    or leaving out the per-token or per-output weight puts it tens of per cent off."""
    model, loss_fn, batches = problem(name)
    objective = curvlab.Objective(model, loss_fn, batches)
    ggn = dense_curvlinops(GGNLinearOperator, model, loss_fn, batches)
    assert rel_err(dense(objective.fisher("mc", n_samples=4000, seed=3)), ggn) < 0.05
    assert objective.fisher("mc").likelihood == {"mse": "gaussian", "bce": "bernoulli"}.get(name, "categorical")


def test_monte_carlo_fisher_of_sequences_with_padding_averages_to_the_gauss_newton():
    """curvlab's cross-entropy on (N, T, V) logits, some targets -100 (one example's all): ignored positions stay
    ignored in every draw and the fully padded example counts for nothing, as in the loss."""
    model, _, batches = problem("sequence_class_axis")
    model.classes_on_axis_1 = False
    padded = []
    for x, y in batches:
        y = y.clone()
        y[:, 4:] = -100
        y[0] = -100
        padded.append((x, y))
    objective = curvlab.Objective(model, cross_entropy, padded)
    ggn = dense(objective.ggn())
    assert rel_err(dense(objective.fisher("mc", n_samples=4000, seed=5)), ggn) < 0.05
    model.classes_on_axis_1 = True  # the same matrix through curvlinops, with PyTorch's class axis
    assert rel_err(dense_curvlinops(GGNLinearOperator, model, nn.CrossEntropyLoss(), padded), ggn) < 1e-12


def test_bernoulli_on_probabilities_averages_to_the_fisher_of_the_logits():
    """BCELoss on probabilities is not on the canonical parameter: its Gauss–Newton matrix depends on the targets
    (the loss's curvature in p is y/p² + (1 − y)/(1 − p)²) and the MC Fisher averages to the Fisher instead, which is
    the Gauss–Newton matrix of the same model written on logits (BCEWithLogitsLoss, the sigmoid left out): here
    curvlinops' GGN of that."""
    logits_model, logits_loss, batches = problem("bce")
    model = nn.Sequential(*logits_model, nn.Sigmoid())
    objective = curvlab.Objective(model, nn.BCELoss(), batches)
    fisher = dense_curvlinops(GGNLinearOperator, logits_model, logits_loss, batches)
    assert rel_err(dense(objective.fisher("mc", n_samples=4000, seed=1)), fisher) < 0.05
    assert rel_err(dense(objective.ggn()), fisher) > 0.05  # where the two differ


@pytest.mark.parametrize(
    "loss_fn",
    [
        nn.CrossEntropyLoss(reduction="sum"),
        functools.partial(F.cross_entropy, reduction="sum"),
        lambda outputs, targets: F.cross_entropy(outputs, targets, reduction="sum"),
        lambda outputs, targets: F.cross_entropy(outputs, targets) * len(targets) / 4,  # a mean over 4, fixed
    ],
    ids=["module", "partial", "function", "fixed-divisor"],
)
def test_a_loss_that_is_not_a_mean_over_examples_is_refused(loss_fn):
    """A sum's λ1 would be 4 times larger at batch_size 16 than at 4: refused before any number is given."""
    model, _, batches = problem("cross_entropy")
    x, y = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
    with pytest.raises(InputError, match="loss_fn: .*mean"):
        curvlab.Objective(model, loss_fn, (x, y), batch_size=4).loss()


def test_a_mean_loss_does_not_depend_on_batch_size():
    model, loss_fn, batches = problem("cross_entropy")
    x, y = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
    whole, chunked = (dense(curvlab.Objective(model, loss_fn, (x, y), batch_size=b).ggn()) for b in (None, 4))
    assert rel_err(chunked, whole) < 1e-12


def test_weighted_losses_have_no_automatic_likelihood():
    model, _, batches = problem("cross_entropy")
    for loss_fn in (nn.CrossEntropyLoss(label_smoothing=0.1), nn.CrossEntropyLoss(weight=torch.ones(3, dtype=DT))):
        with pytest.raises(InputError, match="not the negative log-likelihood"):
            curvlab.Objective(model, loss_fn, batches).fisher("mc")
    assert (
        curvlab.Objective(model, nn.CrossEntropyLoss(label_smoothing=0.1), batches)
        .fisher("mc", likelihood="categorical")
        .likelihood
        == "categorical"
    )  # asked for explicitly
