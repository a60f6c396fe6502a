"""Data-parallel training on PyTorch's own engine (``torch.distributed`` + DDP).

The same training entry point runs on one process or under ``torchrun --nproc_per_node=N``: torchrun sets
``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` / ``MASTER_ADDR`` / ``MASTER_PORT``, :func:`init_distributed`
reads them and joins the process group (NCCL on GPUs, gloo on CPUs).

What differs from the reference (which used ``nn.DataParallel`` and summed per-GPU losses):

* contrastive negatives come from the **global** batch: :func:`all_gather_with_grad` concatenates every rank's
  embeddings and lets gradients flow back to the rank that produced them;
* losses are means, and DDP averages gradients over ranks, so the update equals one process on the global
  batch (see :func:`all_gather_with_grad` for the exact statement);
* :class:`GlobalBatchSampler` gives rank ``r`` rows ``[r·b, (r+1)·b)`` of each global batch, so the gathered
  batch is in the same order as a single process would see it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.nn.functional as F

__all__ = ["DistInfo", "is_distributed", "rank", "world_size", "is_main", "init_distributed", "cleanup",
           "all_gather_with_grad", "info_nce_all_gather", "all_reduce_mean", "barrier", "GlobalBatchSampler"]


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: ``rank`` of ``world_size`` processes, on ``device``."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def is_distributed() -> bool:
    """True inside an initialised process group with more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main() -> bool:
    """True on rank 0 (and in single-process runs): only it writes files and shows progress bars."""
    return rank() == 0


def init_distributed(device: torch.device | str | None = None, backend: str | None = None,
                     timeout_s: float = 600) -> DistInfo:
    """Join the process group described by torchrun's environment variables, if any.

    Without ``WORLD_SIZE`` (> 1) in the environment this does nothing and returns a single-process
    :class:`DistInfo`. On CUDA each rank uses ``cuda:LOCAL_RANK`` and NCCL; otherwise gloo.
    """
    device = torch.device(device) if device is not None else torch.device("cpu")
    n = int(os.environ.get("WORLD_SIZE", "1"))
    if n <= 1 and not dist.is_initialized():
        return DistInfo(device=device)
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        backend = backend or ("nccl" if device.type == "cuda" else "gloo")
        dist.init_process_group(backend=backend, timeout=timedelta(seconds=timeout_s))
    return DistInfo(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local, device=device)


def cleanup() -> None:
    """Leave the process group (if one was joined)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


class _AllGatherWithGrad(torch.autograd.Function):
    """Forward: ``all_gather`` + concat. Backward: sum the gradients every rank computed for the gathered
    tensor (``all_reduce``), then keep the rows this rank contributed."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts, dim=0)  # W x [b, ...] -> [W*b, ...]

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)  # [W*b, ...]: d(sum of all ranks' losses) / d(gathered)
        b = grad.shape[0] // dist.get_world_size()
        return grad[dist.get_rank() * b:(dist.get_rank() + 1) * b]  # [b, ...], this rank's rows


def all_gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x [b, ...]`` from every rank in rank order -> ``[W·b, ...]``, differentiably.

    The backward pass sums, over ranks, the gradient each rank's loss puts on the gathered tensor and hands
    each rank the slice of its own rows (works on gloo and NCCL; every rank must pass the same ``b``).
    With rank ``r`` computing a per-rank loss ``l_r`` = (mean over its b local queries of a loss against all
    W·b keys) and DDP averaging gradients, the update is the gradient of ``mean_r l_r`` = the single-process
    loss over the global batch. Single process: returns ``x`` unchanged.
    """
    if not is_distributed():
        return x
    return _AllGatherWithGrad.apply(x)


def info_nce_all_gather(a: torch.Tensor, v: torch.Tensor, temperature: float | torch.Tensor = 0.05,
                        bidirectional: bool = False, center: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """InfoNCE of this rank's pooled ``a [b, D]`` / ``v [b, D]`` against the all-gathered batch ``[W·b, D]``,
    and the matching top-1 accuracy (detached).

    Same conventions as :func:`avlib.losses.info_nce` / ``contrastive_accuracy`` (cosine logits /
    temperature; the default single direction normalises each video over the audios; ``bidirectional``
    averages both directions); on one process both equal them. Rank ``r``'s positives sit at rows
    ``r·b .. r·b + b - 1`` of the gathered batch. ``center`` subtracts the (gathered) batch mean of each
    modality's embeddings before the cosine: it removes the component all clips share, which otherwise makes
    every cosine close to 1 and holds the loss at log(batch) (see :class:`avlib.train.PretrainConfig`).
    """
    all_a, all_v = all_gather_with_grad(a), all_gather_with_grad(v)  # [W*b, D]
    if center:  # minus the global batch mean, from the one gather
        mean_a, mean_v = all_a.mean(0, keepdim=True), all_v.mean(0, keepdim=True)  # [1, D]
        a, v, all_a, all_v = a - mean_a, v - mean_v, all_a - mean_a, all_v - mean_v
    a, v = F.normalize(a, dim=-1), F.normalize(v, dim=-1)  # [b, D]
    all_a, all_v = F.normalize(all_a, dim=-1), F.normalize(all_v, dim=-1)  # [W*b, D]
    target = torch.arange(len(a), device=a.device) + rank() * len(a)  # [b], own rows in the gathered batch
    logits = v @ all_a.T / temperature  # [b, W*b]: each local video against all audios
    loss = F.cross_entropy(logits, target)
    acc = (logits.argmax(1) == target).float().mean()
    if bidirectional:
        logits = a @ all_v.T / temperature  # [b, W*b]: each local audio against all videos
        loss = (loss + F.cross_entropy(logits, target)) / 2
        acc = (acc + (logits.argmax(1) == target).float().mean()) / 2
    return loss, acc.detach()


def all_reduce_mean(x: torch.Tensor | float) -> torch.Tensor:
    """Mean of a (detached) value over ranks, for logging."""
    t = torch.as_tensor(x, dtype=torch.float64).detach().clone()
    if is_distributed():
        dev = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
        t = t.to(dev)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        t = t.cpu() / dist.get_world_size()
    return t


def barrier() -> None:
    if is_distributed():
        dist.barrier()


class GlobalBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Deterministic batches: a fresh permutation of ``n`` items per epoch (seeded by ``seed + epoch``), cut
    into global batches of ``global_batch``; rank ``r`` of ``world`` gets rows ``[r·b, (r+1)·b)`` of each
    global batch, ``b = global_batch / world``.

    The ragged end (the last ``n mod global_batch`` items) is dropped when ``drop_last``. Otherwise it is
    **trimmed** to a multiple of ``world`` (at most ``world - 1`` items of that epoch's permutation are
    dropped; none on one process) and split into equal contiguous shares, and if fewer items than ranks are
    left the batch is dropped. So every rank yields the same number of equal-sized batches in every epoch
    (DDP's all-reduce never waits for a rank that has run out) and, as DDP averages the ranks' gradients,
    each update equals one process on the same (trimmed) global batch. Nothing is padded: no item counts twice.

    ``set_epoch(e, start_batch=k)`` skips the first ``k`` batches (resuming mid-epoch). ``shuffle=False``
    keeps the dataset order (evaluation).
    """

    def __init__(self, n: int, global_batch: int, *, rank: int = 0, world: int = 1, seed: int = 0,
                 shuffle: bool = True, drop_last: bool = True) -> None:
        if global_batch % world:
            raise ValueError(f"global batch {global_batch} is not divisible by the {world} processes; "
                             f"pick a batch size that is a multiple of --nproc_per_node.")
        if drop_last and n < global_batch:
            raise ValueError(f"only {n} samples for a global batch of {global_batch}: lower the batch size "
                             f"or set drop_last=False.")
        self.n, self.global_batch, self.rank, self.world = n, global_batch, rank, world
        self.seed, self.shuffle, self.drop_last = seed, shuffle, drop_last
        self.epoch, self.start_batch = 0, 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    def _num_batches(self) -> int:
        full, rest = divmod(self.n, self.global_batch)
        return full + (0 if self.drop_last or rest < self.world else 1)  # a ragged end of < world items: dropped

    def __len__(self) -> int:
        return max(0, self._num_batches() - self.start_batch)

    def __iter__(self) -> Iterator[list[int]]:
        if self.shuffle:
            order = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed + self.epoch))
        else:
            order = torch.arange(self.n)
        for i in range(self.start_batch, self._num_batches()):
            batch = order[i * self.global_batch:(i + 1) * self.global_batch]  # [global_batch] or the ragged end
            b = len(batch) // self.world  # the ragged end is trimmed to b * world items, b >= 1
            yield batch[self.rank * b:(self.rank + 1) * b].tolist()
