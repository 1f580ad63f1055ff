"""Run by a test under torchrun (2 or 3 CPU processes, gloo): a small causal transformer LM in float64, sharded by
FSDP2 (each encoder layer, then the root), trained 3 steps with Adam, then measured by a ShardedObjective on each
rank's part of the data (``BATCHES``: in batches of 3 on 2 processes, whole on 3). Rank 0 writes the full parameters
and Adam state to OUT/state.pt; every rank writes its measurements to OUT/rank<r>.json."""

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.distributed.fsdp import fully_shard

import curvlab
from curvlab.distributed import rank_shard
from curvlab.errors import InputError
from curvlab.fsdp import ShardedObjective
from curvlab.geometry import directional_sharpness, preconditioned_sharpness
from curvlab.models.transformer import CausalLM

# The measurement's batch size by process count: on 2 processes each rank's 5 sequences in batches of 3 (the batch
# loop on shards, the last batch short); on 3, each rank's part at once, the parts uneven (4, 3 and 3 sequences).
BATCHES = {2: 3, 3: None}


def lm_loss(logits, targets):
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def make_model_and_data():
    torch.manual_seed(0)
    model = CausalLM(vocab=11, context=8, d_model=6, n_layers=2, n_heads=2, d_ff=10).double()
    tokens = torch.randint(0, 11, (10, 9), generator=torch.Generator().manual_seed(1))
    return model, (tokens[:, :-1], tokens[:, 1:])


def one_process_reference(state: dict) -> dict:
    """The same measurements by one process, exactly (double backward), on the unsharded model with the parameters
    and Adam state of ``state`` (what rank 0 wrote to state.pt), on the whole data."""
    model, data = make_model_and_data()
    model.load_state_dict(state["params"], strict=False)
    params = dict(model.named_parameters())
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for name, entries in state["adam"].items():
        optimizer.state[params[name]] = dict(entries)
    objective = curvlab.Objective(model, lm_loss, data, batch_size=2, hvp_engine="reverse")
    grad = objective.grad()
    return {
        "size": objective.dim,
        "loss": objective.loss(),
        "grad_norm": float(grad.norm()),
        "top3": curvlab.eigs(objective.hessian(), k=3, tol=1e-10).eigenvalues.tolist(),
        "trace": curvlab.trace(objective.hessian(), n_probes=6, seed=3).estimate,
        "trace_hutchpp": curvlab.trace(objective.hessian(), method="hutch++", n_probes=6, seed=3).estimate,
        "density_nodes": curvlab.spectral_density(objective.hessian(), n_probes=2, n_steps=6, seed=4).ritz_values,
        "preconditioned": float(preconditioned_sharpness(objective, optimizer, tol=1e-10).eigenvalues[0]),
        "directional": directional_sharpness(objective, grad),
        "critical": curvlab.critical_sharpness(objective, -0.1 * grad, 0.1, max_evals=12, rtol=1e-4).value,
        "blocks": {
            n: float(r.eigenvalues[0]) for n, r in curvlab.block_eigs(objective, "transformer", tol=1e-6).items()
        },
    }


def _error(call) -> str:
    try:
        call()
    except InputError as err:
        return str(err)
    return "no error"


def main() -> None:
    out = Path(sys.argv[1])
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    model, data = make_model_and_data()
    for layer in model.blocks.layers:
        fully_shard(layer)
    fully_shard(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    inputs, targets = rank_shard(data, world, rank)
    for _ in range(3):
        optimizer.zero_grad()
        lm_loss(model(inputs), targets).backward()
        optimizer.step()
    full = {n: p.full_tensor() for n, p in model.named_parameters()}
    state = {
        n: {k: (v.full_tensor() if hasattr(v, "full_tensor") else v) for k, v in optimizer.state[p].items()}
        for n, p in model.named_parameters()
    }
    if rank == 0:
        torch.save({"params": full, "adam": state}, out / "state.pt")
    before = {n: p.to_local().clone() for n, p in model.named_parameters()}
    objective = ShardedObjective(model, lm_loss, (inputs, targets), batch_size=BATCHES[world])
    results = {"local_dim": objective.dim, "size": objective.size, "loss": objective.loss()}
    results["grad_norm"] = objective.dot(objective.grad(), objective.grad()) ** 0.5
    top = curvlab.eigs(objective.hessian(), k=3, tol=1e-9, basis="float64")
    results["top3"] = top.eigenvalues.tolist()
    results["lambda1_none"] = float(curvlab.eigs(objective.hessian(), tol=1e-9, basis="none").eigenvalues[0])
    results["trace"] = curvlab.trace(objective.hessian(), n_probes=6, seed=3).estimate
    results["trace_hutchpp"] = curvlab.trace(objective.hessian(), method="hutch++", n_probes=6, seed=3).estimate
    density = curvlab.spectral_density(objective.hessian(), n_probes=2, n_steps=6, seed=4)
    results["density_nodes"] = density.ritz_values.tolist()
    results["preconditioned"] = float(
        curvlab.geometry.preconditioned_sharpness(objective, optimizer, tol=1e-9).eigenvalues[0]
    )
    grad = objective.grad()
    results["directional"] = curvlab.geometry.directional_sharpness(objective, grad)
    results["critical"] = curvlab.critical_sharpness(objective, -0.1 * grad, 0.1, max_evals=12, rtol=1e-4).value
    blocks = curvlab.block_eigs(objective, "transformer", tol=1e-6)  # cuts in_proj by rows, as the shards do
    results["blocks"] = {name: float(r.eigenvalues[0]) for name, r in blocks.items()}
    results["errors"] = [_error(lambda: ShardedObjective(model, lm_loss, (inputs, targets), hvp_engine="reverse"))]
    results["errors"].append(_error(objective.ggn))
    results["errors"].append(_error(lambda: curvlab.Objective(model, lm_loss, (inputs, targets))))
    results["errors"].append(_error(lambda: curvlab.Monitor(objective, optimizer, ["step", "assumptions"])))
    results["unchanged"] = all(torch.equal(before[n], p.to_local()) for n, p in model.named_parameters())
    (out / f"rank{rank}.json").write_text(json.dumps(results))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
