"""The ``curvlab`` command line. Bad input: a one-line message and exit code 2, no traceback."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import curvlab


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
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
    demo = sub.add_parser("demo", help="train a small MLP on digits and measure its Hessian spectrum")
    demo.add_argument("--out", type=Path, default=Path("runs/demo"), help="output folder (default runs/demo)")
    demo.add_argument("--steps", type=_positive_int, default=100, help="GD steps before measuring (default 100)")
    demo.add_argument("--lr", type=_positive_float, default=0.5, help="GD learning rate (default 0.5)")
    demo.add_argument("--k", type=_positive_int, default=5, help="number of top eigenvalues (default 5)")
    demo.add_argument("--quiet", action="store_true", help="print nothing")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "demo":
            from curvlab.demo import run_demo

            run_demo(args.out, steps=args.steps, lr=args.lr, k=args.k, quiet=args.quiet)
    except (ValueError, TypeError, ImportError, OSError) as err:
        print(f"curvlab: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
