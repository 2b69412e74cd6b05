"""Device, precision and process-group set-up (device-agnostic: CUDA when present, else CPU).

Distributed runs are configured by torchrun's environment variables only (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``): nccl on CUDA, gloo on CPU.
"""

from __future__ import annotations

import contextlib
import os
import random
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from avssl.errors import ConfigError

if TYPE_CHECKING:
    from avssl.config import TrainConfig


@dataclass
class Dist:
    """This process's place in the job."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0, the process that logs and saves."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        """More than one process (launched by torchrun)."""
        return self.world > 1


def init_distributed(device: torch.device) -> Dist:
    """Join the process group when launched by torchrun; a no-op otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    if not dist.is_initialized():
        from avssl.sigterm import sigterm_kills

        with sigterm_kills():  # a rank that failed before joining must not hold the others
            dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


class LossModule(nn.Module):
    """Makes ``model.loss`` the forward pass, so DDP's gradient hooks see it."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch: dict):
        """``model.loss(batch)``: ``(loss, stats)``, a scalar and named 0-d statistics."""
        return self.model.loss(batch)


def training_runner(model: nn.Module, device: torch.device, dist_info: Dist, compile: bool):
    """What the training loop calls on a batch: ``model.loss`` as a module, wrapped in DDP under
    torchrun (whose construction broadcasts rank 0's weights and buffers) and compiled with
    ``train.compile``."""
    runner = LossModule(model)
    if dist_info.enabled:
        ids = [device.index] if device.type == "cuda" else None
        runner = nn.parallel.DistributedDataParallel(runner, device_ids=ids)
    return torch.compile(runner) if compile else runner


def cleanup_distributed() -> None:
    """Leave the process group when one was joined; a no-op otherwise.

    Call it only where every rank ends its run normally: it waits for all ranks first, because
    torchrun kills the other ranks as soon as one exits non-zero (130 after a signal), which
    could cut off rank 0 still writing ``last.pt``, its weights digest or the summary line.
    """
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def resolve_device(name: str, setting: str = "train.device") -> torch.device:
    """``auto`` picks ``cuda:LOCAL_RANK`` when CUDA is available, else the CPU; ``cuda`` without
    an index is ``cuda:LOCAL_RANK`` too.

    A CUDA device always has its index: ``torch.cuda.set_device`` and DDP's ``device_ids`` refuse
    ``cuda`` alone, and under torchrun every rank would otherwise share the current device (0).

    Args:
        name: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        setting: the config key or flag that gave ``name``, for the error.

    Raises:
        ConfigError: another name, CUDA asked for where there is none, or a device index
            beyond the visible devices.
    """
    if name == "auto" and not torch.cuda.is_available():
        return torch.device("cpu")
    try:
        device = torch.device("cuda" if name == "auto" else name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise ConfigError(f"{setting}: device {name!r}: use auto, cpu, cuda or cuda:N")
    if device.type != "cuda":
        return device
    if not torch.cuda.is_available():
        raise ConfigError(f"{setting}={name} but CUDA is not available")
    chosen = "" if device.index is not None else f" (from {name}: LOCAL_RANK)"
    if device.index is None:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    if device.index >= (count := torch.cuda.device_count()):
        raise ConfigError(f"{setting}: {device}{chosen}, but {count} CUDA device(s) are visible")
    return device


def configure_cuda(device: torch.device, train: TrainConfig) -> None:
    """This process's CUDA settings for training: its device, cuDNN's autotuner and TF32.

    Nothing changes unless ``device`` is CUDA: the settings are the whole process's, and a run
    on the CPU keeps torch's own. On CUDA:

    - ``torch.cuda.set_device(device)``.
    - ``torch.backends.cudnn.benchmark`` on unless ``train.deterministic``. cuDNN then times
      its algorithms for each convolution on the first call with a new input shape and keeps
      the fastest. A run's shapes are fixed (every training batch holds ``train.batch_size``
      clips; validation's last batch and the memory estimate's few sizes are the only others),
      so the timing pays for itself within a few steps; but its choice may differ between runs
      (the timings are noisy), so a deterministic run leaves it off.
    - float32 matmuls (cuBLAS) and cuDNN convolutions in TF32 when ``train.tf32``, else in
      IEEE float32 (torch's own default is TF32 for convolutions and IEEE for matmuls). Set
      through the ``allow_tf32`` flags, which keep torch's per-backend ``fp32_precision``
      settings (torch 2.9 and later) in step. Setting those instead leaves the older flags
      disagreeing with them, and torch then refuses (a RuntimeError) to read the older ones
      for the rest of the process: ``torch.backends.cudnn.allow_tf32`` with convolutions in
      IEEE (read by ``torch.backends.cudnn.flags`` and ``torch.export``),
      ``torch.get_float32_matmul_precision()`` and ``torch.backends.cuda.matmul.allow_tf32``
      with matmuls in TF32 (read by inductor's autotuning: ``train.compile`` with
      ``TORCHINDUCTOR_MAX_AUTOTUNE=1``).

    Args:
        device: the run's resolved device (:func:`resolve_device`).
        train: the run's training settings (``deterministic``, ``tf32``).
    """
    if device.type != "cuda":
        return
    torch.cuda.set_device(device)
    torch.backends.cudnn.benchmark = not train.deterministic
    torch.backends.cuda.matmul.allow_tf32 = train.tf32
    torch.backends.cudnn.allow_tf32 = train.tf32


def cpu_has_bf16() -> bool:
    """True when the CPU has native bf16 instructions (AVX512-BF16 or AMX)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as fh:
            flags = fh.read()
        return "avx512_bf16" in flags or "amx_bf16" in flags
    except OSError:
        return False


def cuda_has_bf16(device: torch.device) -> bool:
    """True when the CUDA ``device`` computes bf16 natively (compute capability 8.0 and up, or
    ROCm), not merely by emulation: torch's default also says yes for older GPUs (V100, T4),
    where bf16 autocast runs slower than fp32."""
    with torch.cuda.device(device):  # is_bf16_supported asks the current device, not ``device``
        return torch.cuda.is_bf16_supported(including_emulation=False)


_warned: set[str] = set()


def check_precision(name: str, device: torch.device, setting: str = "train.precision") -> None:
    """Refuse a precision that is unknown or that ``device`` cannot run.

    Raises:
        ConfigError: naming the setting (the config key or flag that gave ``name``).
    """
    if name not in ("auto", "bf16", "fp16", "fp32"):
        raise ConfigError(f"{setting} must be auto|bf16|fp16|fp32, got {name!r}")
    if name == "fp16" and device.type != "cuda":
        raise ConfigError(f"{setting}=fp16 needs CUDA; use bf16 or fp32 on the CPU")


def resolve_precision(name: str, device: torch.device, setting: str = "train.precision") -> str:
    """Turn ``auto`` into bf16 where the hardware supports it, else fp32 (said once)."""
    check_precision(name, device, setting)
    if name != "auto":
        return name
    ok = cuda_has_bf16(device) if device.type == "cuda" else cpu_has_bf16()
    if not ok and "bf16" not in _warned:
        _warned.add("bf16")
        doing = "training" if setting == "train.precision" else "running"  # overlay: --precision
        print(f"note: no native bf16 on this device; {doing} in fp32", file=sys.stderr)
    return "bf16" if ok else "fp32"


def autocast(precision: str, device: torch.device):
    """The autocast context for a resolved precision (a null context for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed python, numpy and torch alike on every rank (the weights are initialised from them);
    optionally ask torch for deterministic kernels. :func:`avssl.train.rng.seed_rank` gives the
    ranks their own generators once the model is built."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
