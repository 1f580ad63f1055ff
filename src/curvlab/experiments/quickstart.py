"""The main job: full-batch GD vs Adam on an MNIST subset, sharpness tracked against each optimizer's
stability threshold (2/η for GD, 38/η on the preconditioned sharpness for Adam), with one report."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from curvlab.experiments.config import load_config
from curvlab.experiments.report import write_report
from curvlab.experiments.run import resume_run, start_run


def run_quickstart(out: str | Path, quiet: bool = False) -> Path:
    out = Path(out)
    run_dirs = []
    for arm in ("gd", "adam"):
        config = load_config(Path(str(files("curvlab.experiments").joinpath(f"configs/quickstart_{arm}.toml"))))
        run_dir = out / arm
        result = (
            resume_run(run_dir, quiet=quiet)
            if (run_dir / "config.toml").exists()
            else start_run(config, run_dir, quiet=quiet)
        )
        run_dirs.append(run_dir)
        if not quiet:
            print(f"{arm}: {result.status} after {result.steps} steps, final loss {result.final_loss:.4g}")
    report = write_report(run_dirs, out, title="Quickstart: GD vs Adam at the edge of stability (MNIST subset)")
    if not quiet:
        print(f"report: {report}")
    return report
