"""One rank of a distributed-operator test: ``python _distributed_worker.py SPEC.json OUT_DIR``.

Launched W times by ``tests/operators/test_distributed.py`` with the environment torchrun sets
(``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``). The spec gives the batch sizes of every
rank's shard; the analysis set is :func:`problem`'s batches in rank order, so the test can rebuild
it whole in one process. The rank writes what it measured (or the error it raised) to
``OUT_DIR/rank<r>.pt``.
"""

from __future__ import annotations

import datetime
import json
import os
import sys

import torch
import torch.distributed as dist
from torch import nn

DT = torch.float64


def problem(spec: dict):
    """Model, loss and every rank's batches (a list per rank), deterministic in ``spec``."""
    g = torch.Generator().manual_seed(spec.get("seed", 0))
    torch.manual_seed(0)
    norm = [nn.BatchNorm1d(6)] if spec.get("batchnorm") else []
    model = nn.Sequential(nn.Linear(5, 6), *norm, nn.Tanh(), nn.Linear(6, 3)).to(DT)
    shards = [[(torch.randn(n, 5, generator=g, dtype=DT), torch.randint(0, 3, (n,), generator=g)) for n in sizes]
              for sizes in spec["shards"]]
    if spec.get("loss") == "sum_function":  # a plain function: its reduction is probed, per rank
        def loss_fn(out, y):
            return nn.functional.cross_entropy(out, y, reduction="sum")
    else:
        loss_fn = nn.CrossEntropyLoss()
    return model, loss_fn, shards


def measure(op, spec: dict) -> dict:
    """Products, λ_max, trace, density and block densities of ``op`` with the spec's seeds."""
    import hesslens as hl

    seed = spec.get("probe_seed", 0)
    if isinstance(seed, list):  # a different seed per rank: must be refused, not summed
        seed = seed[int(os.environ["RANK"])]
    v = torch.randn(op.n, 3, generator=torch.Generator().manual_seed(seed), dtype=DT)
    top = hl.eigenvalues(op, k=2, which="largest", seed=seed)
    tr = hl.trace(op, num_matvecs=30, seed=seed)
    sd = hl.spectral_density(op, steps=12, probes=3, seed=seed)
    view = hl.blocks(op, "auto")
    per_block = hl.spectral_density(view, steps=8, probes=2, seed=seed)
    return {"hv": op @ v, "gradient": op.gradient(), "loss": op.loss_value, "eig": torch.tensor(top.values),
            "trace": (tr.estimate, tr.stderr), "nodes": torch.tensor(sd.nodes), "weights": torch.tensor(sd.weights),
            "block_nodes": [torch.tensor(per_block[b].nodes) for b in per_block],
            "dense": op.dense(), "samples": op.data.population, "shards": op.shards, "reduction": op.reduction,
            "engine": op.engine, "matvecs": op.matvecs}


class Recorder:
    """A Tracker logger that keeps the steps it was called with."""

    def __init__(self) -> None:
        self.steps: list[int] = []

    def log(self, metrics: dict, step: int) -> None:
        self.steps.append(step)

    def close(self) -> None:
        pass


def track(spec: dict, model: nn.Module, loss_fn, shard: list) -> dict:
    """Train on this rank's shard for ``spec["epochs"]`` epochs, a Tracker stepped after each: wrapped in
    DistributedDataParallel unless ``spec["unsynced"]`` (then every rank trains its own model). Returns the
    tracker's rows, the steps its logger saw, rank 0's model state at each checkpoint, and whether the
    analysis left this rank's buffers as they were."""
    import hesslens as hl

    trained = model if spec.get("unsynced") else nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.SGD(trained.parameters(), lr=0.5)
    recorder = Recorder()
    tracker = hl.Tracker(loss_fn, shard, measure=("lambda_max", "trace"), tol=1e-10, warm_start=False,
                         trace_matvecs=12, loggers=[recorder])
    states, untouched = [], True
    for epoch in range(spec.get("epochs", 2)):
        for x, y in shard:
            opt.zero_grad()
            loss_fn(trained(x), y).backward()
            opt.step()
        states.append({k: v.clone() for k, v in model.state_dict().items()})
        tracker.step(trained, epoch=epoch)
        untouched &= all(torch.equal(v, states[-1][k]) for k, v in model.state_dict().items())
    return {"rows": tracker.history[["lambda_max", "trace"]].values.tolist(), "logged": recorder.steps,
            "states": states, "untouched": untouched}


def main() -> None:
    spec = json.load(open(sys.argv[1]))
    out = sys.argv[2]
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=60))
    rank = dist.get_rank()
    import hesslens as hl

    model, loss_fn, shards = problem(spec)
    result: dict = {}
    try:
        if spec.get("scenario") == "tracker":
            result = track(spec, model, loss_fn, shards[rank])
        else:
            op = hl.HessianOperator(model, loss_fn, shards[rank], **spec.get("kwargs", {}))
            result = measure(op, spec)
            if spec.get("local_too"):  # distributed=False: this rank's shard alone
                local = hl.HessianOperator(model, loss_fn, shards[rank], distributed=False, **spec.get("kwargs", {}))
                result["local_dense"] = local.dense()
    except hl.HesslensError as err:
        result = {"error": str(err), "type": type(err).__name__}
    torch.save(result, os.path.join(out, f"rank{rank}.pt"))
    dist.barrier()  # leave together: a rank that exits while a peer is still destroying the group can abort it
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
