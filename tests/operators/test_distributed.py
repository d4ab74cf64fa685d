"""Distributed operators: 2 and 3 CPU processes (gloo, loopback) against one process holding all the data.

Each case launches real processes (``_distributed_worker.py``, with the environment torchrun sets), every
rank holding its own shard of the analysis set; the reference is one ``HessianOperator`` over every
shard's batches in this process, and its dense Hessian is itself checked against ``torch.func.hessian``
of the weighted objective (``conftest``), so a wrong weight cannot hide on both sides.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist

import hesslens as hl
from hesslens.operators.distributed import Collective, shard

from _distributed_worker import measure, problem
from conftest import reference_hessian

WORKER = Path(__file__).with_name("_distributed_worker.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(spec: dict, tmp_path: Path) -> list[dict]:
    """Run one worker per shard of ``spec``; every rank's result, in rank order."""
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    world = len(spec["shards"])
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()), "WORLD_SIZE": str(world),
           "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(WORKER.parent), os.environ.get("PYTHONPATH", "")])}
    procs = [subprocess.Popen([sys.executable, str(WORKER), str(tmp_path / "spec.json"), str(tmp_path)],
                              env={**env, "RANK": str(r), "LOCAL_RANK": str(r)}, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for r in range(world)]
    logs = []
    try:
        for p in procs:
            logs.append(p.communicate(timeout=240)[0])
    finally:
        for p in procs:
            p.kill()
    for r, (p, log) in enumerate(zip(procs, logs)):
        assert p.returncode == 0, f"rank {r} exited with {p.returncode}:\n{log[-3000:]}"
    return [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(world)]


def single_process(spec: dict) -> tuple[dict, torch.Tensor]:
    """What one process holding every rank's batches measures, and the independent dense reference."""
    model, loss_fn, shards = problem(spec)
    batches = [b for s in shards for b in s]
    op = hl.HessianOperator(model, loss_fn, batches, **spec.get("kwargs", {}))
    total = sum(len(y) for _, y in batches)
    mean = spec.get("loss") != "sum_function"

    def objective(call):
        return sum(torch.nn.functional.cross_entropy(call(x), y, reduction="sum") for x, y in batches) / (total if mean else 1)

    return measure(op, spec), reference_hessian(model, objective)


def _close(a, b, rtol=1e-9, atol=1e-11):
    np.testing.assert_allclose(np.asarray(a, dtype=float), np.asarray(b, dtype=float), rtol=rtol, atol=atol)


def _agree_with_one_process(ranks: list[dict], one: dict, exact: torch.Tensor) -> None:
    torch.testing.assert_close(one["dense"], exact, rtol=1e-10, atol=1e-12)
    for r, got in enumerate(ranks):
        assert "error" not in got, f"rank {r}: {got.get('error')}"
        assert got["samples"] == one["samples"] or one["samples"] is None
        _close(got["dense"], exact, atol=1e-12)
        _close(got["hv"], one["hv"])
        _close(got["gradient"], one["gradient"])
        _close(got["loss"], one["loss"])
        _close(got["eig"], one["eig"], rtol=1e-8)
        _close(got["trace"], one["trace"], rtol=1e-8)
        _close(got["nodes"], one["nodes"], rtol=1e-7, atol=1e-9)
        _close(got["weights"], one["weights"], rtol=1e-7, atol=1e-9)
        for a, b in zip(got["block_nodes"], one["block_nodes"]):
            _close(a, b, rtol=1e-7, atol=1e-9)
        assert got["matvecs"] == one["matvecs"]
        # every rank returns the same numbers: the all-reduced products are the same on every rank
        for key in ("hv", "eig", "nodes", "weights"):
            assert torch.equal(torch.as_tensor(got[key]), torch.as_tensor(ranks[0][key])), key


def test_two_ranks_unequal_shards_match_one_process(tmp_path):
    spec = {"shards": [[40], [17, 6]], "local_too": True}
    ranks = launch(spec, tmp_path)
    one, exact = single_process(spec)
    _agree_with_one_process(ranks, one, exact)
    assert ranks[0]["shards"] == ((40, 1), (23, 2)) and ranks[0]["samples"] == 63
    # distributed=False: the Hessian of the rank's own shard, weighted by its own sample count
    model, loss_fn, shards = problem(spec)
    for r, got in enumerate(ranks):
        _close(got["local_dense"], hl.HessianOperator(model, loss_fn, shards[r]).dense())


def test_three_ranks_sum_reduced_function_with_probed_reduction(tmp_path):
    spec = {"shards": [[20, 10], [15], [7, 3]], "loss": "sum_function", "seed": 1}
    ranks = launch(spec, tmp_path)
    one, exact = single_process(spec)
    assert all(r.get("reduction") == "sum" for r in ranks), ranks[0].get("error")
    _agree_with_one_process(ranks, one, exact)


def test_a_rank_with_an_empty_shard_stops_every_rank_naming_it(tmp_path):
    ranks = launch({"shards": [[12], [], [9]]}, tmp_path)
    assert ranks[1]["type"] == "InvalidInputError" and ranks[1]["error"].startswith("rank 1 of 3: data is empty")
    for r in (0, 2):
        assert ranks[r]["error"].startswith("rank 1 of 3 failed: InvalidInputError: data is empty"), ranks[r]


def test_ranks_with_different_probes_are_refused_not_summed(tmp_path):
    ranks = launch({"shards": [[12], [9]], "probe_seed": [0, 1]}, tmp_path)
    for got in ranks:
        assert got.get("type") == "DistributedMismatchError", got
        assert "different vectors" in got["error"] and "seed=" in got["error"]


def test_a_tracker_in_ddp_training_records_rank_0s_model_on_every_rank_and_logs_once(tmp_path):
    """DistributedDataParallel training with BatchNorm: after a step each rank's running statistics have
    moved with its own batch, so only rank 0's are the model's (what DDP broadcasts at the next forward).
    Every rank's rows must be one process's over all the data at rank 0's state; only rank 0 logs."""
    spec = {"shards": [[24], [16]], "batchnorm": True, "scenario": "tracker", "epochs": 2}
    ranks = launch(spec, tmp_path)
    model, loss_fn, shards = problem(spec)
    batches = [b for s in shards for b in s]
    assert not torch.equal(ranks[0]["states"][-1]["1.running_mean"], ranks[1]["states"][-1]["1.running_mean"])
    for epoch, state in enumerate(ranks[0]["states"]):
        model.load_state_dict(state)
        op = hl.HessianOperator(model, loss_fn, batches)
        want = [hl.eigenvalues(op, k=1, which="largest", tol=1e-10, seed=0).values[0],
                hl.trace(op, num_matvecs=12, seed=0).estimate]
        for got in ranks:
            _close(got["rows"][epoch], want, rtol=1e-8)
    assert ranks[0]["logged"] == [0, 1] and ranks[1]["logged"] == []
    assert all(r["untouched"] for r in ranks)  # rank 1's own buffers are left as its training left them


def test_ranks_holding_different_models_are_refused_naming_the_parameter(tmp_path):
    ranks = launch({"shards": [[12], [9]], "scenario": "tracker", "unsynced": True, "epochs": 1}, tmp_path)
    for got in ranks:
        assert got.get("type") == "DistributedMismatchError", got
        assert got["error"].startswith("rank 1's model is not rank 0's: parameter '0.weight' has other values")
        assert "broadcast_module" in got["error"]


def test_the_documented_script_under_torchrun_prints_what_one_process_prints(tmp_path):
    page = (Path(__file__).resolve().parents[2] / "docs" / "scaling.md").read_text()
    script = tmp_path / "analyse.py"
    script.write_text(re.search(r"```python\n(.*?)```", page, re.S).group(1))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=240, env=env)
    two = subprocess.run([str(Path(sys.executable).with_name("torchrun")), "--standalone", "--nproc-per-node", "2",
                          str(script)], capture_output=True, text=True, timeout=240, env=env)
    assert one.returncode == 0 and two.returncode == 0, (one.stderr + two.stderr)[-3000:]
    numbers = lambda out: [float(x) for x in re.findall(r"[-+]?\d+\.\d+", out)]  # noqa: E731
    assert "shards ((500, 1), (500, 1))" in two.stdout and "shards None" in one.stdout
    assert len(numbers(one.stdout)) == 3
    np.testing.assert_allclose(numbers(two.stdout), numbers(one.stdout), rtol=1e-9)


# -- in this process -----------------------------------------------------------------------------------

def test_distributed_flag_is_checked():
    model, loss_fn, shards = problem({"shards": [[8]]})
    with pytest.raises(hl.InvalidInputError, match="torch.distributed is not initialised"):
        hl.HessianOperator(model, loss_fn, shards[0], distributed=True)
    with pytest.raises(hl.InvalidInputError, match="distributed must be None"):
        hl.HessianOperator(model, loss_fn, shards[0], distributed="yes")
    assert hl.HessianOperator(model, loss_fn, shards[0]).shards is None


def test_a_group_of_one_is_used_only_when_asked(tmp_path):
    model, loss_fn, shards = problem({"shards": [[8, 5]]})
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        assert Collective.resolve(None) is None  # one rank: nothing to share
        op = hl.HessianOperator(model, loss_fn, shards[0], distributed=True)
        assert op.shards == ((13, 2),)
        _close(op.dense(), hl.HessianOperator(model, loss_fn, shards[0], distributed=False).dense(), rtol=1e-12)
    finally:
        dist.destroy_process_group()


def test_shard_cuts_every_batch_into_contiguous_pieces():
    x, y = torch.arange(14.0).reshape(7, 2), torch.arange(7)
    parts = [shard([(x, y), (x[:2], y[:2])], r, 3) for r in range(3)]
    assert [[len(b[1]) for b in p] for p in parts] == [[3, 1], [2, 1], [2]]  # a piece without samples is dropped
    torch.testing.assert_close(torch.cat([p[0][0] for p in parts]), x)
    seq = torch.zeros(4, 6, 3)  # (time, batch, features): batch_dim=1
    assert shard((seq, torch.zeros(4, 6)), 1, 2, batch_dim=1)[0][0].shape == (4, 3, 3)
    with pytest.raises(hl.InvalidInputError, match="0 <= rank < world_size"):
        shard((x, y), 3, 3)
    with pytest.raises(hl.InvalidInputError, match="needs rank= and world_size="):
        shard((x, y))
