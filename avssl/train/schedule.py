"""How many steps a run takes and at what learning rate: the step schedule and the optional
wall-clock budget (``train.max_minutes``) that shortens it."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch
import torch.distributed as dist

from avssl.config import Config, TrainConfig

# steps timed before the budget trusts its estimate of the time per step (the first steps are
# slow: allocator warm-up, oneDNN kernel selection)
MIN_TIMED_STEPS = 5


def lr_factor(step: int, cfg: Config, total: int | None = None) -> float:
    """Linear warm-up, then cosine decay to zero at ``total`` steps (default ``train.steps``), or
    constant with ``train.schedule=constant``.

    The warm-up takes ``train.warmup_steps``, but at most half of ``total``: a run whose time
    budget plans fewer steps than that still decays to zero instead of ending in its warm-up.
    """
    t = cfg.train
    total = t.steps if total is None else total
    warmup = min(t.warmup_steps, total // 2)
    if warmup and step < warmup:
        return (step + 1) / warmup
    if t.schedule == "constant":
        return 1.0
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


class TimeBudget:
    """Plans a run's step count so that it ends, its last validation included, inside
    ``minutes`` of wall-clock time from the start of training (data loading included).

    Budgeted training (Li, Yumer and Ramanan, https://arxiv.org/abs/1905.04753): the decay of
    the learning rate is compressed into the steps that fit, rather than the run being cut off
    at a high learning rate. The plan is re-estimated every step from the mean time per step so
    far (validations and checkpoints amortised into it) and keeps back the duration of the last
    validation for the final one (which can therefore overrun the budget only when no validation
    ran before it, ``train.eval_every`` beyond the planned steps). It never exceeds
    ``train.steps``; with ``minutes <= 0`` it is ``train.steps`` exactly. Until
    ``MIN_TIMED_STEPS`` steps are timed it is ``planned``: a resumed run keeps the plan it had.

    Args:
        minutes: the budget (``<= 0``: none).
        steps: ``train.steps``, the most the plan ever asks for.
        start: the clock reading at which this process's part of the run began (before its
            data loading).
        elapsed_before: seconds an interrupted run had already used (restored on resume).
        clock: a monotonic clock in seconds (injectable for tests).
        planned: the plan an interrupted run had made (restored on resume; default
            ``steps``).
        last_validation: the duration of its last validation (restored on resume).
    """

    def __init__(
        self,
        minutes: float,
        steps: int,
        start: float,
        elapsed_before: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        planned: int | None = None,
        last_validation: float = 0.0,
    ):
        self.limit, self.steps, self.clock = minutes * 60.0, steps, clock
        self.start = start - elapsed_before
        self.loop_start: float | None = None
        self.loop_step = 0
        self.planned = steps if planned is None or not self.enabled else min(planned, steps)
        self.last_validation = last_validation

    @classmethod
    def for_run(cls, cfg: TrainConfig, start: float, resume: dict | None = None) -> TimeBudget:
        """The budget of a run; on resume it continues the checkpoint's.

        The time used, the plan and the last validation's duration are restored, the plan only
        when ``train.steps`` and ``train.max_minutes`` are those it was made for (a changed
        budget, e.g. a lifted one, is planned afresh).

        Args:
            cfg: the run's training settings.
            start: the clock reading at which this process's part of the run began.
            resume: the checkpoint resumed from, or None.
        """
        if resume is None:
            return cls(cfg.max_minutes, cfg.steps, start)
        saved = resume["config"]["train"]
        same = (saved.get("steps"), saved.get("max_minutes")) == (cfg.steps, cfg.max_minutes)
        return cls(
            cfg.max_minutes, cfg.steps, start, elapsed_before=resume.get("elapsed", 0.0),
            planned=resume.get("planned_steps") if same else None,
            last_validation=resume.get("last_validation", 0.0),
        )  # fmt: skip

    @property
    def enabled(self) -> bool:
        """A time limit is set (``train.max_minutes > 0``)."""
        return self.limit > 0

    def elapsed(self) -> float:
        """Seconds used by the run so far (saved in checkpoints)."""
        return self.clock() - self.start

    def begin(self, step: int) -> None:
        """Start timing steps from ``step`` (called once, before the first step)."""
        self.loop_start, self.loop_step = self.clock(), step

    def plan(self, step: int) -> int:
        """The step at which the run should end, seen from ``step``."""
        if not self.enabled or self.loop_start is None:
            return self.planned
        timed = step - self.loop_step
        if timed < MIN_TIMED_STEPS:
            return self.planned
        now = self.clock()
        per_step = (now - self.loop_start) / timed
        remaining = self.start + self.limit - now - self.last_validation
        if per_step > 0:  # capped before int(): a huge budget over a fast step is no integer
            fit = min(self.steps, remaining / per_step)
        else:  # the clock did not move over the timed steps
            fit = self.steps if remaining > 0 else 0
        self.planned = min(self.steps, step + max(0, int(fit)))
        return self.planned


def agreed_plan(plan: int, device: torch.device) -> int:
    """Rank 0's plan on every rank (each rank times itself, but the ranks must stop together and
    apply the same learning rate). Outside a process group, ``plan`` itself.

    Args:
        plan: this rank's planned last step.
        device: the device of this rank's collectives (CUDA under nccl, else the CPU).
    """
    if not dist.is_initialized():
        return plan
    t = torch.tensor([plan], dtype=torch.long, device=device)
    dist.broadcast(t, src=0)
    return int(t.item())
