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
from curvlab.models import build_model  # noqa: E402
from curvlab.reproductions import REGISTRY, reproduce  # noqa: E402
from curvlab.reproductions.base import default_seeds, setting_for  # noqa: E402
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
    shape, classes, _ = SHAPES[setting["data"]]
    stand_in = DataSet(setting["data"], "classification", torch.zeros(2, *shape), torch.zeros(2, dtype=torch.long))
    stand_in.n_classes = classes
    model = build_model(setting["model"], stand_in, **model_options(setting))
    return sum(p.numel() for p in model.parameters())


def training_runs(name: str, setting: dict) -> tuple[int, int]:
    """(training runs per seed, how many of them measure λ1): warmup trains with and without warmup (the latter
    diverges at once); the classical tuners train a baseline grid unmeasured, its best again, and each tuner (whose
    extra evaluations per step are not counted)."""
    if name == "warmup":
        return 2, 1
    if name == "classical-tuners":
        tuners = len(setting["tuners"])
        return len(setting["constant_grid"]) + 1 + tuners, 1 + tuners
    return 1, 1


def measurements_per_run(steps: int, schedule: int | str) -> int:
    """λ1 measurements of one run: every k steps, or two every k steps for ``"pairs:K"``."""
    if isinstance(schedule, str) and schedule.startswith("pairs:"):
        return 2 * math.ceil(steps / int(schedule.split(":")[1]))
    return math.ceil(steps / schedule)


def estimate(name: str) -> list[object] | None:
    """[name, model, parameters, examples, runs × steps, λ1 measurements, seeds, GPU-hours] for the paper scale of a
    training reproduction (None for one that trains nothing, such as the dynamical models)."""
    setting = setting_for(name, "paper")
    if "model" not in setting:
        return None
    params = parameters(setting)
    examples = setting.get("subset") or SHAPES[setting["data"]][2]
    steps = setting["steps"]
    runs, measured = training_runs(name, setting)
    measurements = measured * measurements_per_run(steps, setting["sharpness_every"])
    step_flops = 6 * params * examples
    flops = runs * steps * step_flops + measurements * LANCZOS_PRODUCTS * 2 * step_flops
    seeds = len(default_seeds(name, "paper"))
    hours = seeds * flops / (SUSTAINED_TFLOPS * 1e12) / 3600
    return [
        name,
        setting["model"],
        f"{params:,}",
        f"{examples:,}",
        f"{runs} × {steps:,}",
        f"{measurements:,}",
        seeds,
        hours,
    ]


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
        "λ1 measurements",
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
        f"The dynamical models' paper scale is their full setting (no training). Without a paper scale yet: "
        f"{', '.join(without) or 'none'}.",
    ]
    print("\n".join(lines))
    write_section("paper_scale", "The reproductions at the papers' scale: an estimate for a GPU", lines, estimated=True)


if __name__ == "__main__":
    main()
