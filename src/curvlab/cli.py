"""The ``curvlab`` command line.

Bad input — anything curvlab raises as a :class:`curvlab.errors.InputError` — gives a one-line message and exit
code 2, no traceback. A :class:`curvlab.errors.NonFiniteError` (a NaN or ±inf loss or product: a diverged model)
gives a one-line message and exit code 1. Any other exception is a bug and propagates with its traceback.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import NoReturn

import curvlab
from curvlab.data import DATASETS
from curvlab.demo import run_demo
from curvlab.errors import InputError, MissingInputFile, NonFiniteError
from curvlab.experiments import resume_run, start_run
from curvlab.experiments.config import load_config
from curvlab.experiments.quickstart import run_quickstart
from curvlab.experiments.report import write_report, write_sweep_report
from curvlab.experiments.spectrum import spectrum_of_run
from curvlab.experiments.sweep import load_sweep, run_sweep
from curvlab.models import BUILDERS
from curvlab.monitor import METRICS
from curvlab.optim import OPTIMIZERS
from curvlab.reproductions import REGISTRY, reproduce
from curvlab.reproductions.base import default_seeds
from curvlab.reproductions.claims import SCALES
from curvlab.tuners import TUNERS


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit 2
        self.exit(2, f"curvlab: error: {message}\n")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="curvlab", description="Empirical optimization research on neural networks.")
    parser.add_argument("--version", action="version", version=f"curvlab {curvlab.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help="run one experiment from a TOML config (or resume one)")
    run.add_argument("config", nargs="?", type=Path, help="the TOML config")
    run.add_argument("--out", type=Path, help="run directory (default runs/<config name>)")
    run.add_argument("--resume", type=Path, metavar="DIR", help="continue the interrupted run in DIR")
    run.add_argument("--no-report", action="store_true", help="skip the HTML report")
    run.add_argument("--quiet", action="store_true", help="no progress bar or summary")

    sweep = sub.add_parser("sweep", help="run a sweep (grid, lr_search, batch_ladder) from a TOML config; resumable")
    sweep.add_argument("config", type=Path)
    sweep.add_argument("--out", type=Path, help="sweep directory (default runs/<name>-sweep)")
    sweep.add_argument("--workers", type=_positive_int, help="processes (default: sweep.workers or the cores)")
    sweep.add_argument("--quiet", action="store_true")

    report = sub.add_parser("report", help="write figures and report.html for one run, or several overlaid")
    report.add_argument("run_dirs", nargs="+", type=Path)
    report.add_argument("--out", type=Path, help="where a multi-run report goes (default: the first run)")

    sub.add_parser("list", help="list data sets, models, optimizers, tuners and metrics")

    spectrum = sub.add_parser("spectrum", help="eigenvalues and density of a saved run's model")
    spectrum.add_argument(
        "run_dir",
        type=Path,
        help="a run directory, or its checkpoint.pt (the config.toml beside it rebuilds the model)",
    )
    spectrum.add_argument("--k", type=_positive_int, default=5, help="top eigenvalues (default 5)")
    spectrum.add_argument("--density", type=Path, help="save the spectral density figure here")

    rep = sub.add_parser("reproduce", help="reproduce a paper's finding, with a verdict computed from the data")
    rep.add_argument("name", nargs="?", help="which reproduction (see --list)")
    rep.add_argument("--list", action="store_true", help="list the reproductions with their claims")
    rep.add_argument(
        "--scale",
        choices=SCALES,
        default=None,
        help="quick: the smoke test on one pilot seed (≤ 2 minutes); full (default): the stored runs' setting; "
        "paper: the paper's own setting, for a GPU",
    )
    rep.add_argument("--quick", action="store_true", help="the same as --scale quick")
    rep.add_argument(
        "--seeds", type=int, nargs="+", help="the seeds to run (default: the claims file's fresh seeds; quick: 0)"
    )
    rep.add_argument(
        "--out",
        type=Path,
        help="output folder (default runs/reproduce/<name>, or <name>-<scale> for quick and paper); a rerun resumes",
    )

    quick = sub.add_parser("quickstart", help="the main job: GD vs Adam on MNIST with sharpness against the edge")
    quick.add_argument("--out", type=Path, default=Path("runs/quickstart"))
    quick.add_argument("--quiet", action="store_true")

    demo = sub.add_parser("demo", help="train a small MLP on digits and measure its Hessian spectrum")
    demo.add_argument("--out", type=Path, default=Path("runs/demo"), help="output folder (default runs/demo)")
    demo.add_argument("--steps", type=_positive_int, default=100, help="GD steps before measuring (default 100)")
    demo.add_argument("--lr", type=_positive_float, default=0.5, help="GD learning rate (default 0.5)")
    demo.add_argument("--k", type=_positive_int, default=5, help="number of top eigenvalues (default 5)")
    demo.add_argument("--quiet", action="store_true", help="print nothing")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        _check_output_dir(getattr(args, "out", None))
        return COMMANDS[args.command](args, parser)
    except InputError as err:
        print(f"curvlab: error: {str(err).splitlines()[0] if str(err) else type(err).__name__}", file=sys.stderr)
        return 2
    except NonFiniteError as err:  # a diverged model or NaN data: a finding about the input, not a bug
        print(f"curvlab: {err}", file=sys.stderr)
        return 1


def _check_output_dir(out: Path | None) -> None:
    """``--out`` must be a folder curvlab can create (or that exists): checked before any work starts."""
    if out is None:
        return
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"--out: cannot create the folder {out}: {err.strerror or err}") from err


def _run(args, parser) -> int:
    if (args.config is None) == (args.resume is None):
        parser.error("run: give a CONFIG or --resume DIR (not both)")
    config_path = args.config if args.config is not None else args.resume / "config.toml"
    if args.resume is not None and not config_path.exists():
        raise MissingInputFile(f"run_dir: {args.resume} holds no config.toml; is it a curvlab run directory?")
    processes = load_config(config_path)["train"]["processes"]
    if processes > 1 and "WORLD_SIZE" not in os.environ:  # relaunch this command under torchrun
        return _launch(processes, args)
    if args.resume is not None:
        result = resume_run(args.resume, quiet=args.quiet)
    else:
        config = load_config(args.config)
        result = start_run(config, args.out or Path("runs") / config["name"], quiet=args.quiet)
    if os.environ.get("RANK", "0") != "0":
        return 0
    report = None if args.no_report else write_report([result.run_dir])
    if not args.quiet:
        print(
            f"{result.status} after {result.steps} steps, final loss {result.final_loss:.4g}; records in "
            f"{result.run_dir}"
        )
        if report:
            print(f"report: {report}")
    return 0


def _sweep(args, parser) -> int:
    base, sweep = load_sweep(args.config)
    if args.workers:
        sweep["workers"] = args.workers
    sweep["quiet"] = args.quiet
    out = args.out or Path("runs") / f"{base['name']}-sweep"
    summary = run_sweep(base, sweep, out)
    report = write_sweep_report(summary, out)
    if not args.quiet:
        for result in summary.get("results", []):
            print(
                f"{result['settings'] or 'lr search'}: best lr {result['best_lr']:.3g} (max final loss over seeds "
                f"{result['best_score']:.4g})"
            )
        print(f"report: {report}")
    return 0


def _launch(processes: int, args) -> int:
    """Run ``curvlab run`` on ``processes`` local processes with torchrun (torch.distributed.run)."""
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={processes}",
        "-m",
        "curvlab.cli",
        "run",
    ]
    if args.resume is not None:
        cmd += ["--resume", str(args.resume)]
    else:
        cmd += [str(args.config), "--out", str(args.out or Path("runs") / load_config(args.config)["name"])]
    cmd += [flag for flag, on in (("--quiet", args.quiet), ("--no-report", args.no_report)) if on]
    return subprocess.run(cmd).returncode


def _report(args, parser) -> int:
    print(write_report(args.run_dirs, args.out))
    return 0


def _list(args, parser) -> int:
    registries = (
        ("data sets", DATASETS),
        ("models", BUILDERS),
        ("optimizers", OPTIMIZERS),
        ("tuners", TUNERS),
        ("metrics (§: the section of docs/definitions.md that defines them)", METRICS),
        ("reproductions (curvlab reproduce NAME)", REGISTRY),
    )
    for title, registry in registries:
        print(f"{title}:")
        for name, text in registry.described():
            print(f"  {name:22s} {text}")
    return 0


def _spectrum(args, parser) -> int:
    spectrum_of_run(args.run_dir, args.k, args.density)
    return 0


def _reproduce(args, parser) -> int:
    if args.list:
        for name, rep in REGISTRY.items():
            fresh = f"pre-registered, fresh seeds {list(default_seeds(name))}"
            status = fresh if rep.preregistered else "not yet pre-registered"
            print(f"{name:24s} {rep.source}\n{'':24s} {rep.claim}\n{'':24s} ({status})")
        return 0
    if not args.name:
        parser.error("reproduce: give a NAME or --list")
    scale = "quick" if args.quick else args.scale or "full"
    out = args.out or Path("runs/reproduce") / (args.name if scale == "full" else f"{args.name}-{scale}")
    seeds = tuple(args.seeds) if args.seeds else None
    if seeds is not None and any(seed < 0 for seed in seeds):
        raise InputError(f"--seeds: expected non-negative integers, got {list(seeds)}")
    if args.quick and args.scale not in (None, "quick"):
        raise InputError(f"--quick: the same as --scale quick, which contradicts --scale {args.scale}")
    summary = reproduce(args.name, out, seeds=seeds, scale=scale)
    print(summary["verdict"])
    return 0


def _quickstart(args, parser) -> int:
    run_quickstart(args.out, quiet=args.quiet)
    return 0


def _demo(args, parser) -> int:
    run_demo(args.out, steps=args.steps, lr=args.lr, k=args.k, quiet=args.quiet)
    return 0


COMMANDS = {
    "run": _run,
    "sweep": _sweep,
    "report": _report,
    "list": _list,
    "spectrum": _spectrum,
    "reproduce": _reproduce,
    "quickstart": _quickstart,
    "demo": _demo,
}


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
