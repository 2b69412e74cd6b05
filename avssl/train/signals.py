"""Clean stops of a training run: SIGINT and SIGTERM set a flag instead of killing it.

:func:`avssl.train.loop.train` runs its steps inside :class:`StopFlag` and, once the flag is
set, saves ``last.pt`` and ends at the next step boundary, so an interrupted run resumes
exactly. The previous handlers are restored on exit. Under DDP a signal may reach one rank
only, or the ranks between two steps: :meth:`StopFlag.agreed` makes them stop together, where one
rank stopping alone would leave the others waiting in the next step's collectives.
"""

from __future__ import annotations

import contextlib
import signal

import torch
import torch.distributed as dist


class StopFlag:
    """SIGINT/SIGTERM set a flag; the loop checkpoints and exits at the next step boundary."""

    def __init__(self):
        self.signum = 0
        self._old = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            # signal() raises ValueError outside the main thread (e.g. a test thread): no handler.
            with contextlib.suppress(ValueError):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        self.signum = signum

    def agreed(self, device: torch.device) -> int:
        """The signal any rank has received (0: none), now this rank's too; every rank must call
        it at the same point. Outside a process group, this process's own.

        Args:
            device: the device of this rank's collectives (CUDA under nccl, else the CPU).
        """
        if dist.is_initialized():
            t = torch.tensor([self.signum], dtype=torch.long, device=device)
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
            self.signum = int(t.item())
        return self.signum

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
