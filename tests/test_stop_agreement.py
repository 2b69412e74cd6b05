"""Under DDP the ranks agree on a stop signal at each step boundary (:meth:`StopFlag.agreed`);
a signal that reaches a rank while the agreement's all_reduce is under way must not be lost."""

from __future__ import annotations

import signal

import torch
import torch.distributed as dist

from avssl.train.signals import StopFlag

CPU = torch.device("cpu")


def test_a_signal_during_the_agreement_is_kept_for_the_next_one(tmp_path, monkeypatch):
    store = f"file://{tmp_path / 'store'}"
    dist.init_process_group("gloo", init_method=store, rank=0, world_size=1)
    try:
        stop, reduce = StopFlag(), dist.all_reduce

        def late_signal(tensor, *args, **kwargs):  # SIGTERM while the signals are reduced
            work = reduce(tensor, *args, **kwargs)
            stop._handle(signal.SIGTERM, None)
            return work

        monkeypatch.setattr(dist, "all_reduce", late_signal)
        assert stop.agreed(CPU) == 0  # not in the reduction: no rank stops on it here
        monkeypatch.undo()
        assert stop.agreed(CPU) == signal.SIGTERM  # but at the next agreement
    finally:
        dist.destroy_process_group()
