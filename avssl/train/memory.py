"""A model too large to train here is refused in one line, before any of it is built.

Without this check a config with wide towers (``model.channels`` up to 100,000 each passes the
range checks) allocated tens of gigabytes while being built and was killed by the kernel, with
no message. The check counts the parameters on PyTorch's ``meta`` device, which allocates
nothing, and compares the memory that training needs for them alone with what the device has
free. Activations come on top, so the estimate is a lower bound: a model refused here could
never train, while one accepted may still run out of memory on a large batch.

The process's peak so far (:func:`peak_mb`), which a run's summary reports, is read here too.
"""

from __future__ import annotations

import os
import resource
import sys

import torch

from avssl.config import Config
from avssl.errors import ConfigError

# bytes per parameter that training holds whatever the precision (autocast keeps the weights in
# fp32): the weights, their gradients, and AdamW's two moments
WEIGHT_BYTES = 4
TRAINING_BYTES = WEIGHT_BYTES + 4 + 8
AVERAGE_BYTES = 4  # train.ema_decay: the averaged copy of the weights


def count_parameters(cfg: Config) -> int:
    """The number of parameters of the model ``cfg`` describes, built on the ``meta`` device.

    Raises:
        ConfigError: the model settings are refused (as by :func:`avssl.models.build_model`).
    """
    from avssl.models import build_model

    with torch.random.fork_rng(devices=[]), torch.device("meta"):
        model = build_model(cfg.model, cfg.data, cfg.loss)
    return sum(p.numel() for p in model.parameters())


def available_bytes(device: torch.device) -> int | None:
    """Memory free for a new allocation on ``device``, or None when it cannot be told.

    CUDA reports its free memory. On the CPU: Linux's ``MemAvailable`` (what can be allocated
    without swapping; else the free physical pages), or less when the process's control group
    (a container's memory limit) leaves less room below its limit.
    """
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    if device.type != "cpu":
        return None
    free = _meminfo_available()
    room = _cgroup_room()
    return free if room is None else room if free is None else min(free, room)


def proc_kib_field(path: str, name: str) -> int | None:
    """Bytes of a ``NAME:  N kB`` line of a Linux ``/proc`` file, or None where it is absent."""
    try:
        with open(path, encoding="ascii") as fh:
            for line in fh:
                if line.startswith(f"{name}:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def peak_rss_bytes() -> int | None:
    """This process's peak resident set: ``VmHWM`` of ``/proc/self/status`` where it exists,
    else ``ru_maxrss`` (which, on Linux, a process started by fork and exec inherits from its
    parent's peak: a small run under a large parent would report the parent's)."""
    peak = proc_kib_field("/proc/self/status", "VmHWM")
    if peak is not None:
        return peak
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss is in KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale or None


def peak_mb(device: torch.device) -> float | None:
    """The process's peak so far in MiB: CUDA's peak allocation, or the CPU's peak resident set
    (what ``/usr/bin/time -v`` reports as the maximum resident set size)."""
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else peak_rss_bytes()
    return round(peak / 2**20, 1) if peak else None


def _meminfo_available() -> int | None:
    free = proc_kib_field("/proc/meminfo", "MemAvailable")
    if free is not None:
        return free
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not on every system (macOS lacks the first)
        return None


# (limit, usage, statistics, the statistic of reclaimable page cache): cgroup v2, then v1
CGROUP_FILES = (
    ("memory.max", "memory.current", "memory.stat", "inactive_file"),
    ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes", "memory/memory.stat",
     "total_inactive_file"),
)  # fmt: skip
CGROUP_ROOT = "/sys/fs/cgroup"


def _cgroup_room() -> int | None:
    """Bytes left below the control group's memory limit, or None without a limit.

    The usage counts page cache, which the kernel gives back under pressure: its inactive part
    is left out, as container runtimes do for the working set (a container that has read a lot
    of data sits near its limit yet can allocate).
    """
    for limit_file, usage_file, stat_file, key in CGROUP_FILES:
        try:
            with open(os.path.join(CGROUP_ROOT, limit_file), encoding="ascii") as fh:
                limit = fh.read().strip()
            with open(os.path.join(CGROUP_ROOT, usage_file), encoding="ascii") as fh:
                usage = int(fh.read().strip())
        except (OSError, ValueError):
            continue
        if limit == "max" or not limit.isdigit() or int(limit) >= 2**62:  # v1's "unlimited"
            return None
        cache = 0
        try:
            with open(os.path.join(CGROUP_ROOT, stat_file), encoding="ascii") as fh:
                for line in fh:
                    name, _, value = line.partition(" ")
                    if name == key:
                        cache = int(value)
        except (OSError, ValueError):
            pass
        return max(0, int(limit) - max(0, usage - cache))
    return None


def format_bytes(n: int) -> str:
    """``1.5 GiB``, ``20.3 MiB``: a byte count for a message."""
    return f"{n / 2**30:,.1f} GiB" if n >= 2**30 else f"{n / 2**20:,.1f} MiB"


def local_processes() -> int:
    """torchrun's ``LOCAL_WORLD_SIZE`` (processes on this machine); 1 when unset or malformed."""
    try:
        return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        return 1


def training_bytes(n_params: int, cfg: Config) -> int:
    """Bytes training holds for ``n_params`` parameters, activations not included."""
    return n_params * (TRAINING_BYTES + (AVERAGE_BYTES if cfg.train.ema_decay else 0))


def check_model_fits(cfg: Config, device: torch.device) -> int:
    """Refuse a model whose parameters alone need more memory for training than ``device`` has.

    Args:
        cfg: the run's config.
        device: where it will train (on the CPU, once for each of the ``LOCAL_WORLD_SIZE``
            processes torchrun starts on this machine).

    Returns:
        The number of parameters.

    Raises:
        ConfigError: the weights, gradients and optimiser state exceed the free memory.
    """
    n = count_parameters(cfg)
    # DDP on the CPU (torchrun): every process on this machine holds its own copy in one memory,
    # and all check it before any of them allocates
    copies = local_processes() if device.type == "cpu" else 1
    need, have = training_bytes(n, cfg) * copies, available_bytes(device)
    if have is not None and need > have:
        what = "weights, gradients and AdamW moments" + (
            " (and their average: train.ema_decay)" if cfg.train.ema_decay else ""
        )
        if copies > 1:
            what += f" in {copies} processes"
        raise ConfigError(
            f"model: {n / 1e6:,.1f} M parameters need {format_bytes(need)} for their {what} "
            f"alone, more than the {format_bytes(have)} free on {device}; make the widths "
            "(model.channels, model.embed_dim, model.head_hidden, model.fusion_hidden) smaller"
        )
    return n
