"""Reading what the metrics are given (arrays, lists or tensors) as numpy arrays."""

from __future__ import annotations

import numpy as np
import torch


def as_array(x) -> np.ndarray:
    """``x`` as a numpy array: a tensor detached and moved to the CPU, a bf16 one read as float32
    (numpy has no bfloat16: a model run under bf16 gives such scores and maps); anything else
    through ``np.asarray``."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        return (x.float() if x.dtype == torch.bfloat16 else x).numpy()
    return np.asarray(x)
