"""The reproductions at the papers' own scale (`--scale paper`), for a GPU machine: an estimate of what each costs,
and the runs themselves.

    python bench/paper_scale.py                 # the estimate: prints it and writes its section of docs/benchmarks.md
    python bench/paper_scale.py --run [NAME...] # on a GPU machine: every reproduction with a paper scale, fresh seeds

The paper scales read CIFAR-10 from ``data/cifar10`` (the python-version batches, unpacked: a folder holding
``data_batch_1`` ... ``test_batch``); nothing is downloaded. The estimate counts floating-point operations from the
setting alone (no data, no run): a full-batch step costs about 6·P·N (forward and backward over N examples for P
parameters), one Hessian-vector product about twice a gradient, and a sharpness measurement about
``LANCZOS_PRODUCTS`` products; it divides by an assumed sustained rate (``SUSTAINED_TFLOPS``, float32, a fraction of
an H100's peak: small fully-connected models do not fill a GPU) and multiplies by the seeds. It is an order of
magnitude to plan with, not a measurement: the runs' own seconds, stored with their numbers, are the measurement.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import markdown_table, write_section  # noqa: E402

from curvlab.data.base import DataSet  # noqa: E402
from curvlab.models import build_model, transformer_lm  # noqa: E402
from curvlab.reproductions import REGISTRY, reproduce  # noqa: E402
from curvlab.reproductions.base import default_seeds, setting_for  # noqa: E402
from curvlab.reproductions.batch_size import lr_powers_for, steps_for  # noqa: E402
from curvlab.reproductions.claims import scale_overrides  # noqa: E402
from curvlab.reproductions.training import model_options  # noqa: E402

SUSTAINED_TFLOPS = 10.0  # assumed float32 throughput on one H100 for these models (its dense peak is several times it)
LANCZOS_PRODUCTS = 40  # Hessian-vector products of one warm-started λ1 estimate at tol 1e-3
SHAPES = {"cifar10": ((3, 32, 32), 10, 50_000), "mnist": ((1, 28, 28), 10, 60_000)}


def has_paper_scale(name: str) -> bool:
    try:
        scale_overrides(name, "paper")
    except ValueError:
        return False
    return True


def parameters(setting: dict) -> int:
    """Parameters of the setting's model, built on a stand-in data set of the right shapes (no data read)."""
    if setting["model"] == "transformer":
        options = setting["data_options"]
        return sum(
            p.numel()
            for p in transformer_lm(
                options["vocab_size"], options["context"], **setting.get("model_options", {})
            ).parameters()
        )
    shape, classes, _ = SHAPES[setting["data"]]
    stand_in = DataSet(setting["data"], "classification", torch.zeros(2, *shape), torch.zeros(2, dtype=torch.long))
    stand_in.n_classes = classes
    model = build_model(setting["model"], stand_in, **model_options(setting))
    return sum(p.numel() for p in model.parameters())


def measurements_per_run(steps: int, schedule: int | str) -> int:
    """λ1 measurements of one run: every k steps, or two every k steps for ``"pairs:K"``."""
    if isinstance(schedule, str) and schedule.startswith("pairs:"):
        return 2 * math.ceil(steps / int(schedule.split(":")[1]))
    return math.ceil(steps / schedule)


def workload(name: str, setting: dict) -> tuple[str, float, float]:
    """(the runs as "runs × steps", the examples (tokens for a language model) that training passes through,
    summed over the runs; the examples that Hessian-vector products pass through, at ``LANCZOS_PRODUCTS`` per λ1
    estimate). Warmup trains with and without warmup; the classical tuners and CDAT train a constant-η grid
    unmeasured, its best again and each tuner (the tuners' extra evaluations per step not counted), CDAT then its
    minibatch grid; the batch-size reproduction searches the step size (powers of 10, then two half powers) for
    each optimizer and batch size at that size's steps; the assumption tests evaluate about 3 more gradients a step
    (two points, two batches); the directional reproduction tunes SGD and clipped SGD on a grid (counted with one
    widening) and measures every shadow's direction at the sampled steps of two trajectories."""
    if name == "directional-sharpness":
        steps = max(setting["epochs"]) * setting["batches_per_epoch"]
        tokens = setting["data_options"]["context"]
        runs = 2 * (len(setting["lr_grid"]) + 1) + len(setting["trajectories"])
        products = len(setting["trajectories"]) * len(setting["epochs"]) * setting["sampled_batches"] * 8
        step = setting["train_size"] // setting["batches_per_epoch"] * tokens
        return f"{runs} × {steps:,}", runs * steps * step, products * 2 * setting["measure_subset"] * tokens
    if name == "batch-size-sign-descent":
        context, sequences = setting["data_options"]["context"], setting["data_options"]["n_sequences"]
        sizes = {k: sequences if v == "full" else v for k, v in setting["batch_sizes"].items()}
        searches = {k: 6 if k in (next(iter(sizes)), "Full") else 4 for k in sizes}  # with and without momentum
        per_search = len(lr_powers_for(setting, "adam")) + 2  # powers of 10, then two half powers
        runs = sum(searches.values()) * per_search
        tokens = sum(searches[k] * per_search * steps_for(setting, k) * sizes[k] * context for k in sizes)
        return f"{runs} (steps by batch size)", tokens, 0.0
    if name == "optimization-assumptions":
        runs, steps, batch = len(setting["optimizers"]), setting["steps"], setting["batch_size"]
        return f"{runs} × {steps:,}", runs * steps * batch, runs * steps * batch * 3  # 3 more passes a step
    examples, steps = setting.get("subset") or SHAPES[setting["data"]][2], setting["steps"]
    runs, measured, extra = 1, 1, 0.0
    if name == "warmup":
        runs = 2
    if name in ("classical-tuners", "cdat"):
        tuners = len(setting["tuners"]) if name == "classical-tuners" else 2 + len(setting["warmup_sigmas"]) - 1
        runs, measured = (
            len(setting["constant_grid"]) + 1 + tuners,
            1 + (len(setting["tuners"]) if name == "classical-tuners" else 2),
        )
    if name == "cdat":
        extra = len(setting["minibatch_sigmas"]) * setting["minibatch_steps"] * sum(setting["minibatch_batches"])
    measurements = measured * measurements_per_run(steps, setting["sharpness_every"])
    text = f"{runs} × {steps:,}" + (
        f" + {len(setting['minibatch_sigmas']) * len(setting['minibatch_batches'])} minibatch" if extra else ""
    )
    return text, runs * steps * examples + extra, measurements * LANCZOS_PRODUCTS * 2 * examples


def estimate(name: str) -> list[object] | None:
    """[name, model, parameters, examples, runs × steps, seeds, GPU-hours] for the paper scale of a training
    reproduction (None for one that trains nothing, such as the dynamical models)."""
    setting = setting_for(name, "paper")
    if "model" not in setting:
        return None
    params = parameters(setting)
    examples = setting.get("subset") or setting.get("train_size") or setting.get("data_options", {}).get("n_sequences")
    examples = examples or SHAPES[setting["data"]][2]
    runs, trained, measured = workload(name, setting)
    flops = 6 * params * (trained + measured)
    seeds = len(default_seeds(name, "paper"))
    hours = seeds * flops / (SUSTAINED_TFLOPS * 1e12) / 3600
    return [name, setting["model"], f"{params:,}", f"{examples:,}", runs, seeds, hours]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", nargs="*", metavar="NAME", help="run these (default: all) at the paper scale")
    parser.add_argument("--out", type=Path, default=Path("runs/paper-scale"))
    args = parser.parse_args()
    names = [n for n in REGISTRY if has_paper_scale(n)]
    if args.run is not None:
        for name in args.run or names:
            summary = reproduce(name, args.out / name, scale="paper")
            print(f"{name}: {summary['verdict'].splitlines()[0]}")
        return
    rows = [row for row in map(estimate, names) if row is not None]
    header = [
        "reproduction",
        "model",
        "parameters",
        "examples",
        "runs × steps",
        "seeds",
        "GPU-hours",
    ]
    table = markdown_table(header, rows)
    without = [n for n in REGISTRY if not has_paper_scale(n)]
    lines = [
        f"Estimated from floating-point operations at an assumed sustained {SUSTAINED_TFLOPS:g} TFLOP/s (float32, "
        f"one H100) and {LANCZOS_PRODUCTS} Hessian-vector products per λ1 estimate; an order of magnitude to plan "
        "with (bench/paper_scale.py's docstring says how it counts). Run them with `python bench/paper_scale.py "
        "--run` on a GPU machine with CIFAR-10 in `data/cifar10`.",
        "",
        table,
        "",
        "6·P operations per example undercount a convolutional model, whose weights are used at every position: "
        "the resnet rows are lower bounds.",
        "",
        f"The dynamical models' paper scale is their full setting (no training). Without a paper scale yet: "
        f"{', '.join(without) or 'none'}.",
    ]
    print("\n".join(lines))
    write_section("paper_scale", "The reproductions at the papers' scale: an estimate for a GPU", lines, estimated=True)


if __name__ == "__main__":
    main()
