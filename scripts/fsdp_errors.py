"""How far the FSDP2-sharded measurements lie from the one-process exact ones: tests/scripts/fsdp_measure.py under
torchrun on 2 and 3 CPU processes (gloo), against the unsharded model's double-backward values on the whole set
(the same comparison as tests/test_fsdp.py, which asserts them to its tolerance). Returns the largest relative error
of each quantity over the two process counts; ``paragraph`` renders them into docs/distributed.md's generated block.

    python scripts/docs_numbers.py --run fsdp-errors   # measure (about a minute), store, and re-render the block
"""

import json
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "scripts")]

from fsdp_measure import one_process_reference  # noqa: E402
from ranks import run_torchrun  # noqa: E402

WORLDS = (2, 3)
TESTED = 1e-8  # tests/test_fsdp.py's relative tolerance
QUANTITIES = {  # key in the measurements: what the page calls it
    "loss": "loss",
    "grad_norm": "gradient norm",
    "top3": "top-3 eigenvalues",
    "lambda1_none": "λ1 without a stored basis",
    "trace": "Hutchinson trace",
    "trace_hutchpp": "Hutch++ trace",
    "density_nodes": "density's Ritz values",
    "preconditioned": "preconditioned sharpness",
    "directional": "directional sharpness",
    "blocks": "transformer blocks' λ1",
}


def relative(got, want) -> float:
    """The largest |got − want| / max(|want|, 1) over the entries (NaN entries, padding of the density, skipped)."""
    got, want = (torch.as_tensor(v, dtype=torch.float64).flatten() for v in (got, want))
    keep = ~torch.isnan(want)
    return float(((got[keep] - want[keep]).abs() / want[keep].abs().clamp(min=1.0)).max())


def measure() -> dict:
    errors: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for world in WORLDS:
            out = Path(tmp) / str(world)
            out.mkdir()
            done = run_torchrun([str(ROOT / "tests" / "scripts" / "fsdp_measure.py"), str(out)], world)
            if done.returncode != 0:
                raise RuntimeError(f"torchrun with {world} processes failed:\n{done.stderr[-3000:]}")
            got = json.loads((out / "rank0.json").read_text())
            want = one_process_reference(torch.load(out / "state.pt"))
            got["lambda1_none"], want["lambda1_none"] = got["lambda1_none"], want["top3"][0]
            got["blocks"], want["blocks"] = list(got["blocks"].values()), list(want["blocks"].values())
            for key in QUANTITIES:
                errors[key] = max(errors.get(key, 0.0), relative(got[key], want[key]))
    return {"worlds": list(WORLDS), "tested": TESTED, "errors": errors}


def _sci(value: float) -> str:
    return f"{value:.0e}".replace("e-0", "e-")


def paragraph(numbers: dict) -> str:
    """The measured errors as docs/distributed.md states them."""
    listed = ", ".join(f"{QUANTITIES[k]} {_sci(v)}" for k, v in numbers["errors"].items())
    worlds = " and ".join(str(w) for w in numbers["worlds"])
    return (
        f"Relative errors measured (the larger over {worlds} processes; `python scripts/docs_numbers.py --run "
        f"fsdp-errors`): {listed}. The test asserts each to {_sci(numbers['tested'])}."
    )
