"""An in-place ReLU that runs bf16 CPU tensors through their 16-bit integer pattern.

PyTorch's CPU kernels for ``clamp_min_`` and ``threshold_backward`` are slow in bf16 (they
compute in fp32, converting every element there and back): on the 2-core AMX VM a ReLU pass over
a 210 MB bf16 map took 51 ms in place and its backward 32 ms, against 10 and 22 ms for the same
passes over the bits read as ``int16`` (``python benchmarks/relu_bf16.py``; README,
Benchmarks). The sign bit of a bf16 number is the sign bit of its ``int16`` pattern, so
clamping the pattern at 0 zeroes exactly the negative numbers, and passing the gradient where
the output's pattern is above 0 passes it exactly where the output is positive: the values of
:func:`torch.relu` and its gradient, bit for bit, but for NaNs (a NaN with its sign bit set
becomes 0; one without it keeps its gradient) and ``-0.0`` (becomes ``+0.0``). Other dtypes and
devices, and code under :func:`torch.compile`, take :func:`torch.nn.functional.relu`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class _Bf16ReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        x.view(torch.int16).clamp_min_(0)
        ctx.mark_dirty(x)
        ctx.save_for_backward(x)
        return x

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (out,) = ctx.saved_tensors  # autograd hands back a gradient of the output's dtype: bf16
        bits = torch.ops.aten.threshold_backward(grad.view(torch.int16), out.view(torch.int16), 0)
        return bits.view(torch.bfloat16)


def relu_(x: Tensor) -> Tensor:
    """``F.relu(x, inplace=True)``, through the integer pattern for bf16 tensors on the CPU.

    Args:
        x: any shape; modified in place.

    Returns:
        ``x``, its negative entries zeroed.
    """
    if x.dtype == torch.bfloat16 and x.device.type == "cpu" and not torch.compiler.is_compiling():
        return _Bf16ReLU.apply(x)
    return F.relu(x, inplace=True)  # elsewhere, and under torch.compile (which fuses it)


class ReLU(nn.ReLU):
    """:class:`torch.nn.ReLU` (always in place) computed by :func:`relu_`; no parameters, so a
    checkpoint of a model built with ``nn.ReLU`` loads into it unchanged."""

    def __init__(self):
        super().__init__(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        """Any shape -> the same tensor, negatives zeroed."""
        return relu_(x)
