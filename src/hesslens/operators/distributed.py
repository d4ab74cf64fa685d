"""Hessian products over torch.distributed: every rank holds a shard of the analysis data.

With W processes in a ``torch.distributed`` process group, rank r holds the batches B_r
(N_r = Σ_{b∈B_r} n_b samples, N = Σ_r N_r). The operator on every rank is the Hessian of the loss
over all N samples, exactly as one process holding every batch would define it
(:mod:`hesslens.operators.data`):

    L(θ) = Σ_r Σ_{b∈B_r} w_b · ℓ_b(θ),    w_b = n_b / N (mean-reduced loss),  w_b = 1 (sum-reduced),

so rank r weighs its own batches with the *global* N and one product is the sum of the ranks'
partial products,

    H V = Σ_r H_r V,    H_r = Σ_{b∈B_r} w_b ∇²ℓ_b,

one all-reduce of the n × k result per call (what data-parallel training does with gradients).
Every rank multiplies the same V: the algorithms are deterministic given their ``seed=`` and the
products, and all-reduced products are the same on every rank, so every rank runs the same
iterations and returns the same estimate. Each product is first checked across ranks — its index in
the sequence, its shape and two moments of V — so that ranks that diverged (a different ``seed=``
per rank, a different algorithm or setting) get a clear error instead of a mixture of unrelated
products or a hang.

Every rank's operator is one of the same model: the constructor refuses parameters that differ from
rank 0's and takes rank 0's buffers into its snapshot (:meth:`Collective.agree_on_model`).

Set-up is collective too: the constructor checks its shard on every rank, and an error on one rank
(an empty shard, a non-finite loss) is raised on every rank, naming the rank (:meth:`Collective.together`),
so that no rank waits for a peer that has stopped. Each rank chooses its own product engine for its own
shard (each is verified against double backward there); only the products are shared.

:func:`shard` cuts data that every rank holds whole into this rank's part, :func:`init_from_environment`
joins the group ``torchrun`` describes and :func:`broadcast_module` makes every rank's model rank 0's —
what ``hesslens analyze`` does when ``torchrun`` launches it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
from typing import Any, Iterator, Sequence

import torch
from torch.utils._pytree import tree_flatten, tree_unflatten

from ..errors import DistributedMismatchError, HesslensError, InvalidInputError
from .data import AnalysisData, as_analysis_data


def initialised() -> bool:
    """Whether a torch.distributed default process group exists."""
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def check_flag(distributed: Any) -> bool | None:
    """``distributed=`` as given, checked: None (auto), True or False."""
    if distributed is not None and not isinstance(distributed, bool):
        raise InvalidInputError(f"distributed must be None (auto), True or False, got {distributed!r}")
    return distributed


def secondary_rank(distributed: bool | None) -> bool:
    """Whether this process is a rank other than 0 of the group an operator built with ``distributed``
    would sum over (the rank that writes nothing where every rank computes the same numbers)."""
    return check_flag(distributed) is not False and initialised() and torch.distributed.get_world_size() > 1 \
        and torch.distributed.get_rank() != 0


class Collective:
    """The process group an operator's products are summed over (the default group)."""

    def __init__(self) -> None:
        self.rank = torch.distributed.get_rank()
        self.world_size = torch.distributed.get_world_size()
        self.backend = str(torch.distributed.get_backend())
        self.products = 0  # products so far: ranks must ask for the same sequence

    @staticmethod
    def resolve(distributed: bool | None) -> "Collective | None":
        """None (auto): the default group where one is initialised with more than one rank; True: the
        default group, which must exist; False: none (this process's data alone)."""
        if check_flag(distributed) is False:
            return None
        if not initialised():
            if distributed:
                raise InvalidInputError("distributed=True, but torch.distributed is not initialised: call "
                                        "torch.distributed.init_process_group() first (torchrun sets its environment)")
            return None
        group = Collective()
        return group if group.world_size > 1 or distributed else None

    def gather(self, value: Any) -> list[Any]:
        """``value`` of every rank, in rank order (a picklable object)."""
        out: list[Any] = [None] * self.world_size
        torch.distributed.all_gather_object(out, value)
        return out

    @contextlib.contextmanager
    def together(self) -> Iterator[None]:
        """Run a local step on every rank; if it fails on any, raise on every one. The failing rank raises
        its own error; the others an :class:`InvalidInputError` naming the rank and its message."""
        failure: BaseException | None = None
        try:
            yield
        except Exception as err:  # re-raised below, after the other ranks have heard of it
            failure = err
        reports = self.gather(None if failure is None else f"{type(failure).__name__}: {' '.join(str(failure).split())}")
        if isinstance(failure, HesslensError):  # the same kind of error, saying which rank's shard it is
            raise type(failure)(f"rank {self.rank} of {self.world_size}: {failure}") from failure
        if failure is not None:
            raise failure
        bad = [(r, m) for r, m in enumerate(reports) if m is not None]
        if bad:
            rank, message = bad[0]
            raise InvalidInputError(f"rank {rank} of {self.world_size} failed: {message}")

    def agree_on_model(self, parameters: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor]) -> None:
        """Make every rank's operator one of the same model: refuse ``parameters`` (the tensors the loss
        reads as parameters) that differ from rank 0's, and overwrite ``buffers`` (the operator's own
        snapshots, not the model's) with rank 0's.

        Parameters are compared by name, shape, dtype and three sums (Σx, Σ|x|, Σx² in float64, to 1e-6
        relative: replicas kept equal on different hardware pass, different models do not); a mismatch
        raises :class:`~hesslens.DistributedMismatchError` on every rank, naming the first tensor and rank.
        Buffers take rank 0's values as ``DistributedDataParallel`` does: it broadcasts rank 0's buffers at
        the start of every forward, after which each rank's BatchNorm statistics move with its own batch,
        so between two steps only rank 0's are the model's. One all-gather of the digests and one
        broadcast per buffer."""
        def digest(t: torch.Tensor) -> tuple[Any, ...]:
            d = t.detach().to(torch.float64)
            return tuple(t.shape), str(t.dtype), float(d.sum()), float(d.abs().sum()), float(d.square().sum())

        mine = ({n: digest(t) for n, t in parameters.items()}, {n: (tuple(t.shape), str(t.dtype)) for n, t in buffers.items()})
        everyone = self.gather(mine)
        ref_params, ref_buffers = everyone[0]
        for rank, (params, bufs) in enumerate(everyone[1:], start=1):
            if list(params) != list(ref_params) or list(bufs) != list(ref_buffers):
                names = sorted(set(params) ^ set(ref_params) | set(bufs) ^ set(ref_buffers))
                raise DistributedMismatchError(self._model_mismatch(
                    rank, f"other tensors ({', '.join(names[:3]) or 'in another order'})"))
            for name, (shape, dtype, *sums) in params.items():
                ref_shape, ref_dtype, *ref_sums = ref_params[name]
                if (shape, dtype) != (ref_shape, ref_dtype):
                    raise DistributedMismatchError(self._model_mismatch(
                        rank, f"parameter '{name}' of shape {list(shape)} {dtype} against {list(ref_shape)} {ref_dtype}"))
                scale = ref_sums[1]  # Σ|x|: Σx may cancel to about zero
                if not (abs(sums[0] - ref_sums[0]) <= 1e-6 * scale + 1e-12
                        and all(math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-12) for a, b in zip(sums[1:], ref_sums[1:]))):
                    raise DistributedMismatchError(self._model_mismatch(
                        rank, f"parameter '{name}' has other values (Σθ² {sums[2]:.9g} against {ref_sums[2]:.9g})"))
            for name, meta in bufs.items():
                if meta != ref_buffers[name]:
                    raise DistributedMismatchError(self._model_mismatch(rank, f"buffer '{name}' of another shape or dtype"))
        with torch.no_grad():
            for t in buffers.values():
                self.broadcast_(t)

    def _model_mismatch(self, rank: int, detail: str) -> str:
        return (f"rank {rank}'s model is not rank 0's: {detail}. Every rank must analyse the same model: train "
                "with DistributedDataParallel (its replicas stay equal), load the same checkpoint on every rank, or "
                "call hesslens.operators.distributed.broadcast_module(model) first")

    def broadcast_(self, tensor: torch.Tensor, src: int = 0) -> torch.Tensor:
        """Rank ``src``'s ``tensor`` on every rank, in place (through the rank's GPU for a CPU tensor under NCCL)."""
        if self.backend == "nccl" and tensor.device.type == "cpu":
            tensor.copy_(self.broadcast_(tensor.to(self._device()), src))
            return tensor
        torch.distributed.broadcast(tensor, src)
        return tensor

    def sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        """All-reduce (sum) in place; returns the tensor. NCCL reduces CUDA tensors only: a CPU tensor (a
        loss value, a float64 gradient) goes through the rank's GPU there."""
        if self.backend == "nccl" and tensor.device.type == "cpu":
            tensor.copy_(self.sum_(tensor.to(self._device())))
            return tensor
        torch.distributed.all_reduce(tensor)
        return tensor

    def _device(self) -> torch.device:
        return torch.device("cuda", torch.cuda.current_device()) if self.backend == "nccl" else torch.device("cpu")

    def sum_many(self, tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Σ over ranks of several tensors of one dtype, by one all-reduce of their concatenation."""
        if not tensors:
            return []
        flat = self.sum_(torch.cat([t.reshape(-1) for t in tensors]))
        out, start = [], 0
        for t in tensors:
            out.append(flat[start:start + t.numel()].reshape(t.shape))
            start += t.numel()
        return out

    def check_product(self, vs: Sequence[torch.Tensor]) -> None:
        """Refuse a product whose columns differ between ranks: the same index in the sequence, the same
        shapes and the same Σv and Σv² (to 1e-6 relative: round-off on different hardware passes, different
        probes do not). One all-gather of seven numbers per product."""
        self.products += 1
        mine = torch.tensor([self.products, len(vs), sum(v.shape[0] for v in vs), sum(v.shape[-1] for v in vs),
                             sum(v.numel() for v in vs), sum(float(v.double().sum()) for v in vs),
                             sum(float(v.double().square().sum()) for v in vs)], dtype=torch.float64)
        device = self._device()
        everyone = [torch.empty(mine.shape, dtype=mine.dtype, device=device) for _ in range(self.world_size)]
        torch.distributed.all_gather(everyone, mine.to(device))
        ref = everyone[0].cpu()
        for rank, other in enumerate(everyone[1:], start=1):
            other = other.cpu()
            if not torch.equal(other[:5], ref[:5]):
                what = "a different sequence or shape of products"
            elif not all(math.isclose(float(a), float(b), rel_tol=1e-6, abs_tol=1e-12) for a, b in zip(other[5:], ref[5:])):
                what = "different vectors (a different seed= or input on some rank?)"
            else:
                continue
            raise DistributedMismatchError(self._mismatch(f"rank {rank} asked for {what} than rank 0, at product "
                                                          f"{self.products} ({int(other[3])} columns against {int(ref[3])})"))

    def join_shards(self, data: AnalysisData, probed: str | None) -> tuple[tuple[tuple[int, int], ...], AnalysisData, str | None]:
        """Every rank's (samples, batches) in rank order; this rank's ``data`` weighed with the global sample
        count; the reduction the ranks probed (None where none could). Ranks that probed different ones are refused."""
        shards = self.gather((data.total, len(data), probed))
        found = sorted({p for _, _, p in shards if p is not None})
        if len(found) > 1:
            raise InvalidInputError(f"the ranks probed different reductions of the loss ({', '.join(found)}); "
                                    "pass reduction='mean' or reduction='sum'")
        counts = tuple((n, b) for n, b, _ in shards)
        return counts, dataclasses.replace(data, population=sum(n for n, _ in counts)), (found[0] if found else None)

    def _mismatch(self, detail: str) -> str:
        return (f"the ranks are not running the same analysis: {detail}. Every rank must call the same "
                "estimators with the same settings and seed=, in the same order")


def shard(data: Any, rank: int | None = None, world_size: int | None = None, *, batch_dim: int = 0) -> list[Any]:
    """This rank's part of data that every rank holds whole: each batch's samples cut into ``world_size``
    contiguous pieces along ``batch_dim`` (``torch.tensor_split``: sizes differ by at most one), piece
    ``rank`` kept. ``rank`` and ``world_size`` default to the initialised default group's. Batches are
    ``(inputs, targets)`` pairs or any structure of tensors whose batched tensors share ``batch_dim``; a
    0-dimensional tensor is kept whole. Returns a list of batches (a batch with no samples left is dropped;
    a rank whose shard is empty is refused when its operator is built)."""
    if rank is None or world_size is None:
        if not initialised():
            raise InvalidInputError("shard() needs rank= and world_size=, or an initialised torch.distributed")
        rank = torch.distributed.get_rank() if rank is None else rank
        world_size = torch.distributed.get_world_size() if world_size is None else world_size
    if not (isinstance(world_size, int) and world_size >= 1 and isinstance(rank, int) and 0 <= rank < world_size):
        raise InvalidInputError(f"need 0 <= rank < world_size, got rank={rank!r}, world_size={world_size!r}")
    out = []
    for batch in as_analysis_data(data, batch_dim):
        leaves, spec = tree_flatten(batch)
        cut = [torch.tensor_split(x, world_size, dim=batch_dim)[rank] if isinstance(x, torch.Tensor) and x.ndim else x
               for x in leaves]
        if any(isinstance(x, torch.Tensor) and x.ndim and x.shape[batch_dim] for x in cut):
            out.append(tree_unflatten(cut, spec))
    return out


def init_from_environment(backend: str | None = None) -> bool:
    """Initialise the default process group from the environment ``torchrun`` sets (``WORLD_SIZE`` > 1,
    ``RANK``, ``MASTER_ADDR``, ``MASTER_PORT``), with ``backend`` (default ``nccl`` where CUDA is
    available, else ``gloo``; a CPU analysis on a GPU machine passes ``"gloo"``). Returns whether this
    call initialised it (the caller then destroys it); False outside a multi-process launch or when a
    group already exists."""
    if initialised() or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    torch.distributed.init_process_group(backend)
    return True


def broadcast_module(module: torch.nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s parameters and buffers into every rank's ``module`` (in place, what
    ``DistributedDataParallel`` does at construction): every rank then analyses the same model."""
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            torch.distributed.broadcast(tensor.data, src)
