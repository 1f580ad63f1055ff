"""The examples gallery, docs/gallery.md: every file in examples/ run by the command its header gives, the figures
of its report copied into docs/gallery/, and its section of the page rendered from docs/gallery/NAME.json (the
command, its wall time on the machine that ran it, the figures). tests/test_gallery.py fails when an example has no
entry, a figure is missing, or the page differs from its rendering.

    python scripts/gallery.py                     # re-render docs/gallery.md from the stored entries
    python scripts/gallery.py --run NAME [NAME …] # run those entries' commands again (--run all: every entry but
                                                  #   gpt2_blocks, which takes about half an hour; name it to run it)
    python scripts/gallery.py --from-run NAME DIR [--seconds S] [--note TEXT] [--runs RUN …]
                                                  # take the figures of a run that NAME's command made in DIR

The commands run from the repository root, writing into a temporary directory.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STORE = ROOT / "docs" / "gallery"
PAGE = ROOT / "docs" / "gallery.md"
SLOW = {"gpt2_blocks"}  # not in --run all


@dataclass(frozen=True)
class Entry:
    """One gallery entry: the examples it shows, what it asks, how to run it (``{out}``: its output directory)."""

    title: str
    files: tuple[str, ...]
    question: str
    command: str  # as a user types it
    figures: tuple[str, ...]  # under the output directory
    argv: tuple[tuple[str, ...], ...] = ()  # the commands run (default: ``command`` with --out {out}); {py}: python

    def commands(self) -> list[list[str]]:
        steps = self.argv or (tuple(self.command.split()),)
        return [[sys.executable if a == "{py}" else a for a in step] for step in steps]


ENTRIES = {
    "quickstart": Entry(
        "Gradient descent and Adam at the edge of stability",
        ("quickstart_gd.toml", "quickstart_adam.toml"),
        "Does full-batch GD's sharpness rise to 2/η and hover there, and Adam's preconditioned sharpness to 38/η?",
        "curvlab quickstart --out runs/quickstart",
        ("figures/edge_of_stability.png", "figures/sharpness.png"),
        (("{py}", "-m", "curvlab.cli", "quickstart", "--out", "{out}", "--quiet"),),
    ),
    "monitor_loop": Entry(
        "The Monitor in a plain PyTorch loop",
        ("monitor_loop.py",),
        "What do λ1 and the critical sharpness do along minibatch SGD, measured inside an ordinary loop?",
        "python examples/monitor_loop.py",
        ("figures/sharpness.png", "figures/critical_sharpness.png"),
        (("{py}", "examples/monitor_loop.py", "--out", "{out}"),),
    ),
    "lightning_train": Entry(
        "A PyTorch Lightning callback",
        ("lightning_train.py",),
        "The same measurements from a Lightning Trainer, with no change to the LightningModule.",
        "python examples/lightning_train.py",
        ("figures/edge_of_stability.png",),
        (("{py}", "examples/lightning_train.py", "--out", "{out}"),),
    ),
    "hf_trainer": Entry(
        "A Hugging Face Trainer callback",
        ("hf_trainer.py",),
        "The sharpness of a small GPT-2 trained by the Hugging Face Trainer, on the model's own loss.",
        "python examples/hf_trainer.py",
        ("figures/edge_of_stability.png", "figures/loss.png"),
        (("{py}", "examples/hf_trainer.py", "--out", "{out}"),),
    ),
    "fsdp_train": Entry(
        "Sharpness of an FSDP2-sharded language model",
        ("fsdp_train.py",),
        "λ1 and AdamW's preconditioned λ1 against its threshold, measured from each rank's shards.",
        "torchrun --nproc-per-node 2 examples/fsdp_train.py",
        ("figures/sharpness.png",),
        (("{py}", "-m", "torch.distributed.run", "--nproc-per-node", "2", "examples/fsdp_train.py", "--out", "{out}"),),
    ),
    "lr_search": Entry(
        "A learning-rate search over seeds",
        ("lr_search.toml",),
        "Which learning rate minimises the worst final loss over three seeds (diverged runs counting as +∞)?",
        "curvlab sweep examples/lr_search.toml --out runs/lr_search",
        ("figures/grid_search.png",),
        (("{py}", "-m", "curvlab.cli", "sweep", "examples/lr_search.toml", "--out", "{out}", "--quiet"),),
    ),
    "gpt2_blocks": Entry(
        "Blockwise sharpness of a GPT-2 under FSDP2, two learning rates",
        ("gpt2_blocks.toml",),
        "Do the Hessian blocks of a small GPT-2 order as Wang et al. (2025) find them, Emb ≪ QK < FFN < VO ≪ Norm?",
        "curvlab run examples/gpt2_blocks.toml --out runs/a; curvlab run <the same with lr = 1e-3> --out runs/b; "
        "curvlab report runs/a runs/b --out runs/both",
        ("figures/block_order.png", "figures/block_sharpness.png", "figures/loss.png"),
    ),
}


def run_entry(name: str) -> dict:
    """Run the entry's commands into a temporary directory; its figures and wall time."""
    entry = ENTRIES[name]
    if not entry.argv:
        raise SystemExit(f"{name}: run its command by hand, then --from-run {name} DIR --seconds S")
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / name)
        start = time.perf_counter()
        for step in entry.commands():
            argv = [out if a == "{out}" else a for a in step]
            subprocess.run(argv, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        return store(name, Path(out), time.perf_counter() - start)


KEY_NUMBERS = ("steps", "steps seen in the records", "final loss", "final validation loss", "final λ1")
KEY_NUMBERS += ("block pairs in Wang et al.'s order (last)",)


def run_rows(runs: list[Path]) -> list[dict]:
    """The key numbers of each run (the report's), and the run's wall time where its directory shows it (a
    ``curvlab run`` directory: from writing its config to its last status)."""
    from curvlab.experiments.report import key_numbers
    from curvlab.monitor import load_records

    rows = []
    for run in runs:
        numbers = key_numbers(run.name, run, load_records(run), None)
        row = {"run": run.name} | {k: numbers[k] for k in KEY_NUMBERS if k in numbers}
        if (run / "status.json").exists() and (run / "config.toml").exists():
            row["wall time (s)"] = (run / "status.json").stat().st_mtime - (run / "config.toml").stat().st_mtime
        rows.append(row)
    return rows


def runs_under(out: Path) -> list[Path]:
    """The run directories (with records) of an output directory: itself, or its subdirectories."""
    found = [out] if (out / "records.jsonl").exists() else []
    return found + sorted(d for d in out.iterdir() if (d / "records.jsonl").exists())


def store(name: str, out: Path, seconds: float | None, note: str | None = None, runs: list[Path] | None = None) -> dict:
    """Copy the entry's figures from ``out`` into docs/gallery/ and write its numbers (those of ``runs``, by default
    the run directories under ``out``)."""
    STORE.mkdir(exist_ok=True)
    figures = []
    for figure in ENTRIES[name].figures:
        target = STORE / f"{name}__{Path(figure).name}"
        if not (out / figure).exists():
            made = sorted(str(p.relative_to(out)) for p in out.rglob("*.png"))
            raise SystemExit(f"{name}: its run made no {figure}; it made {made}")
        shutil.copyfile(out / figure, target)
        figures.append(target.name)
    machine = f"{platform.machine()}, {os.cpu_count()} CPU cores"
    rows = run_rows(runs if runs is not None else runs_under(out))
    numbers = {"seconds": seconds, "figures": figures, "machine": machine, "note": note, "runs": rows}
    (STORE / f"{name}.json").write_text(json.dumps(numbers, indent=1) + "\n")
    return numbers


def section(name: str, numbers: dict) -> str:
    entry = ENTRIES[name]
    files = ", ".join(f"`examples/{f}`" for f in entry.files)
    took = f"{numbers['seconds']:,.0f} s" if numbers["seconds"] is not None else "not timed"
    lines = [f"## {entry.title}", "", f"{files}. {entry.question}", "", "```", entry.command, "```", ""]
    lines += [f"Wall time of the command that made these figures: {took} ({numbers['machine']}).", ""]
    if numbers.get("note"):
        lines += [numbers["note"], ""]
    if numbers["runs"]:
        lines += [_table(numbers["runs"]), ""]
    lines += [f"![{Path(f).stem}](gallery/{f})" for f in numbers["figures"]]
    return "\n".join(lines)


def _table(rows: list[dict]) -> str:
    columns = list(dict.fromkeys(k for row in rows for k in row))

    def cell(value: object) -> str:
        if isinstance(value, float):
            return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
        return "" if value is None else str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return "\n".join(lines + ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows])


def render() -> str:
    """docs/gallery.md from the stored entries."""
    head = [
        "# Gallery",
        "",
        "Every example in `examples/`, run by the command shown, with figures from its report. The page and its",
        "figures are written by `scripts/gallery.py` from the runs it made (`--run`) or a stored run made by the",
        "command shown (`--from-run`); the wall time is that run's.",
        "",
    ]
    body = [section(name, json.loads((STORE / f"{name}.json").read_text())) for name in ENTRIES]
    return "\n".join(head) + "\n" + "\n\n".join(body) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", nargs="+", metavar="NAME", help="entries to run again, or 'all'")
    parser.add_argument("--from-run", nargs=2, metavar=("NAME", "DIR"), help="take a stored run's figures")
    parser.add_argument("--seconds", type=float, help="with --from-run: the wall time of its command")
    parser.add_argument("--note", help="with --from-run: how it was run, shown under the time")
    parser.add_argument("--runs", nargs="+", type=Path, help="with --from-run: its run directories")
    args = parser.parse_args()
    names = [n for n in ENTRIES if n not in SLOW] if args.run == ["all"] else args.run or []
    for name in names:
        print(name, run_entry(name), flush=True)
    if args.from_run:
        name, run = args.from_run
        print(name, store(name, Path(run), args.seconds, args.note, args.runs))
    PAGE.write_text(render())


if __name__ == "__main__":
    main()
