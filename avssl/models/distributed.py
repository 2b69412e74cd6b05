"""Gathering features across DDP ranks for batch-wide contrastive losses.

Every rank computes the same loss on the global batch. :func:`gather_features` keeps the autograd
graph of the local shard; its backward sums the gradient from every rank's (identical) loss and
returns the local slice, so after DDP averages the parameter gradients each rank holds exactly
the gradient of the global loss, for the towers and for shared scalars such as the temperature
alike. The backward uses ``all_reduce`` (not ``reduce_scatter``), which gloo supports on CPU.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor


def world() -> tuple[int, int]:
    """``(rank, world_size)``; ``(0, 1)`` when torch.distributed is not initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class _GatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        rank, size = world()
        ctx.rank, ctx.n = rank, x.shape[0]
        parts = [torch.empty_like(x) for _ in range(size)]
        dist.all_gather(parts, x.contiguous())
        parts[rank] = x
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)
        return grad[ctx.rank * ctx.n : (ctx.rank + 1) * ctx.n]


def gather_features(x: Tensor) -> Tensor:
    """Concatenate ``x`` from every rank along dim 0, keeping gradients for the local shard.

    All ranks must pass the same shape (drop the last incomplete batch). Integer tensors (e.g.
    labels) are gathered without autograd.

    Args:
        x: ``[B, ...]`` local features.

    Returns:
        ``[world_size * B, ...]``, rank-major; ``x`` itself when not distributed.
    """
    _, size = world()
    if size == 1:
        return x
    if x.requires_grad and torch.is_grad_enabled():
        return _GatherWithGrad.apply(x)
    parts = [torch.empty_like(x) for _ in range(size)]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


def any_rank(flags: Tensor) -> bool:
    """Whether any element of ``flags`` is True on any rank (every rank must call it).

    Args:
        flags: bool tensor of any shape, on the device the process group communicates on.
    """
    hit = flags.any().to(torch.int32).reshape(1)
    if world()[1] > 1:
        dist.all_reduce(hit, op=dist.ReduceOp.MAX)
    return bool(hit)
