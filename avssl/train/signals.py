"""Clean stops of a training run: SIGINT and SIGTERM set a flag instead of killing it.

:func:`avssl.train.loop.train` runs its steps inside :class:`StopFlag` and, once the flag is
set, saves ``last.pt`` and ends at the next step boundary, so an interrupted run resumes
exactly; a second SIGINT stops it at once (``KeyboardInterrupt``), keeping the last checkpoint.
The previous handlers are restored on exit. Under DDP a signal may reach one rank
only, or the ranks between two steps: :meth:`StopFlag.agreed` makes them stop together, where one
rank stopping alone would leave the others waiting in the next step's collectives.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys

import torch
import torch.distributed as dist


class StopFlag:
    """SIGINT/SIGTERM set a flag; the loop checkpoints and exits at the next step boundary."""

    def __init__(self):
        self.signum = 0
        self._sigints = 0  # SIGINTs delivered to this process
        self._finishing = False
        self._old = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            # signal() raises ValueError outside the main thread (e.g. a test thread): no handler.
            with contextlib.suppress(ValueError):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        """The first signal sets the flag (and says so: a validation or a slow batch can take a
        while). A second SIGINT delivered to this process (Ctrl-C pressed again) stops it at
        once, as the default SIGINT would; the last checkpoint, written atomically, stays.
        SIGTERM never does: it asks for a clean stop (a scheduler's pre-emption), and the step
        under way must still end with its checkpoint. Under torchrun the note offers no second
        Ctrl-C: torchrun receives it, forwards the first signal to the ranks and kills them 30 s
        later, whatever the user presses."""
        if signum == signal.SIGINT:
            self._sigints += 1
            if self._sigints > 1 and not self._finishing:
                raise KeyboardInterrupt
        if self.signum:
            return
        self.signum = signum
        name = signal.Signals(signum).name
        at_once = signum == signal.SIGINT and "TORCHELASTIC_RUN_ID" not in os.environ
        again = "; press Ctrl-C again to stop at once" if at_once else ""
        note = f"\n{name}: stopping after this step{again}\n"
        with contextlib.suppress(OSError):  # not print(): the handler may interrupt a write
            os.write(sys.stderr.fileno(), note.encode())

    def finishing(self) -> None:
        """From now on a second SIGINT stops nothing: the run writes the checkpoint it stops
        with (seconds), the one a stop at once would lose."""
        self._finishing = True

    def agreed(self, device: torch.device) -> int:
        """The signal any rank had received when it called this (0: none), now this rank's too;
        every rank must call it at the same point. Outside a process group, this process's own.

        A signal that reaches this rank during the agreement is not in it: the ranks stop on it
        at the next one.

        Args:
            device: the device of this rank's collectives (CUDA under nccl, else the CPU).
        """
        if not dist.is_initialized():
            return self.signum
        t = torch.tensor([self.signum], dtype=torch.long, device=device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        agreed = int(t.item())
        # the signal every rank agreed on, else one that came during the all_reduce (still
        # this rank's alone, so not returned: the others would go on to the next step)
        self.signum = agreed or self.signum
        return agreed

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
