"""Data-parallel training under ``torchrun`` (PyTorch DistributedDataParallel): one code path.

Nothing here is needed for a single process.  Launched by ``torchrun --nproc-per-node N``, the
environment variables ``WORLD_SIZE``/``RANK``/``LOCAL_RANK`` are set; :func:`init` (called by
every agent's ``learn``) joins the process group: NCCL on GPUs, gloo on CPUs.

How a step is split (see :func:`lwd_gym.training.fit`): every rank draws the *same* global
mini-batch of ``batch_size`` rows from the same seeded generator and computes the loss on its
contiguous share; DDP averages the gradients.  The effective batch size is therefore
``batch_size`` whatever the number of processes, and the learning rate is used as given.
Random draws of the loss (diffusion noise and timesteps, the VAE's reparameterisation) go
through :func:`randn` / :func:`randint`, which draw them for the whole global batch and keep the
rank's rows, so N processes compute what one process would (up to float summation order).

Why not ``DistributedSampler``: it shards an epoch's *permutation* per rank, so an N-process run
sees different mini-batches than a 1-process run with the same effective batch; sharding each
global batch keeps runs comparable and resumable from the same data-order state.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist

_SHARD: tuple[int, int, int] | None = None  # (start, stop, global rows) of this rank's share of the batch


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def is_main_process() -> bool:
    """True on rank 0 (and without distributed training): the process that writes files and logs."""
    return rank() == 0


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init() -> bool:
    """Join the process group if launched by ``torchrun`` and not joined yet; returns whether training is distributed."""
    if launched_by_torchrun() and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend=backend)
    return is_distributed()


def local_device() -> torch.device | None:
    """The GPU of this process under ``torchrun`` (``cuda:LOCAL_RANK``), else ``None``."""
    if launched_by_torchrun() and torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return None


def broadcast(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (JSON-able objects, numpy arrays; no-op in one process)."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def shard(index: torch.Tensor) -> tuple[torch.Tensor, float]:
    """This rank's contiguous share of a global batch ``index`` and the factor that makes the
    average of the ranks' mean losses equal the global batch's mean loss (unequal shares).

    Sets the share used by :func:`randn` / :func:`randint` until the next call.
    """
    global _SHARD
    n, world, r = len(index), world_size(), rank()
    if world == 1:
        _SHARD = None
        return index, 1.0
    bounds = [n * i // world for i in range(world + 1)]
    start, stop = bounds[r], bounds[r + 1]
    _SHARD = (start, stop, n)
    return index[start:stop], (stop - start) * world / n


def clear_shard() -> None:
    """End of training: :func:`randn` / :func:`randint` draw plain local shapes again."""
    global _SHARD
    _SHARD = None


def _global_rows(shape: Sequence[int]) -> tuple[list[int], slice]:
    shape = list(shape)
    if _SHARD is None or not shape or shape[0] != _SHARD[1] - _SHARD[0]:
        return shape, slice(None)
    start, stop, n = _SHARD
    return [n, *shape[1:]], slice(start, stop)


def randn(shape: Sequence[int], generator: torch.Generator | None, device: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``torch.randn`` for a training batch's rows: the same numbers a single process would draw."""
    full, rows = _global_rows(shape)
    return torch.randn(full, generator=generator, device=device, dtype=dtype)[rows]


def randint(high: int, shape: Sequence[int], generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """``torch.randint(0, high)`` for a training batch's rows (see :func:`randn`)."""
    full, rows = _global_rows(shape)
    return torch.randint(0, high, full, generator=generator, device=device)[rows]


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` where ``mask`` is true, over the *global* batch.

    In one process: ``(values * mask).sum() / mask.sum()``.  In a data-parallel step the ranks'
    shares hold different numbers of valid entries, so each rank divides by the global count
    (and undoes :func:`shard`'s per-row rescaling): the averaged gradient is the one a single
    process computes on the whole batch.  No valid entry at all gives 0, not NaN (a batch of
    snippets that each hold a single real step has no transition for the world model).
    """
    total = (values * mask).sum()
    count = mask.sum().to(values.dtype)
    if _SHARD is None or not is_distributed():
        return total / count.clamp(min=1)
    dist.all_reduce(count)
    start, stop, n = _SHARD
    return total / count.clamp(min=1) * (n / (stop - start))


def all_mean(value: torch.Tensor) -> torch.Tensor:
    """Mean of a scalar over ranks (every rank gets it: NaN checks must agree or ranks deadlock)."""
    if not is_distributed():
        return value
    value = value.detach().clone()
    dist.all_reduce(value)
    return value / world_size()
