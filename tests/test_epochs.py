"""Training batches across epoch boundaries: prepared ahead into the next epoch, in the same order
and with the same global random draws as loading each epoch in the main thread."""

from __future__ import annotations

import itertools
import threading
import time
from types import SimpleNamespace

import pytest
import torch
from bad_media import last_json

import train
from avssl.train.epochs import training_batches


class _Items(torch.utils.data.Dataset):
    """Six items; records the ``(epoch, index)`` of every item built, and in which thread."""

    def __init__(self):
        self.epoch, self.built, self.threads = 0, [], set()

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return 6

    def __getitem__(self, index: int) -> dict:
        self.built.append((self.epoch, index))
        self.threads.add(threading.current_thread().name)
        return {"x": torch.tensor([self.epoch * 100 + index])}


def _cfg(prefetch: int) -> SimpleNamespace:
    return SimpleNamespace(
        data=SimpleNamespace(prefetch=prefetch, num_workers=0),
        train=SimpleNamespace(seed=3, batch_size=3),
    )


def _take(prefetch: int, n: int, epoch: int = 0, start: int = 0) -> list[tuple[int, int, list]]:
    batches = training_batches(
        _Items(), _cfg(prefetch), 0, 1, torch.device("cpu"), epoch, start, None
    )
    out = [(e, i, raw["x"].flatten().tolist()) for e, i, raw in itertools.islice(batches, n)]
    batches.close()
    return out


def test_same_batches_with_and_without_the_thread():
    """Two batches an epoch: indices restart at each epoch, items are the epoch's permutation."""
    threaded, inline = _take(2, 7), _take(0, 7)
    assert threaded == inline
    assert [(e, i) for e, i, _ in threaded] == [
        (0, 0),
        (0, 1),
        (1, 0),
        (1, 1),
        (2, 0),
        (2, 1),
        (3, 0),
    ]
    for e in range(3):
        items = sorted(x for ep, _, xs in threaded if ep == e for x in xs)
        assert items == [e * 100 + k for k in range(6)]
    # a resumed run starts at its batch, and later epochs at their first
    assert _take(2, 3, epoch=1, start=1) == threaded[3:6]


def test_the_thread_prepares_the_next_epoch_before_this_one_is_done():
    items = _Items()
    batches = training_batches(items, _cfg(2), 0, 1, torch.device("cpu"), 0, 0, None)
    first = next(batches)  # epoch 0, batch 0 of 2
    assert first[:2] == (0, 0)
    deadline = time.monotonic() + 10
    while not any(e == 1 for e, _ in items.built) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert any(e == 1 for e, _ in items.built), "the next epoch was not started ahead"
    assert items.threads == {"avssl-prefetch"}
    batches.close()


def test_the_thread_keeps_the_global_draws_of_an_epoch_start():
    """Each epoch's start draws once from the global generator, as DataLoader.__iter__ does
    without a generator of its own: the model's augmentation draws are the same either way."""
    states = {}
    for prefetch in (0, 2):
        with torch.random.fork_rng():  # the other tests' generator is left as it was
            torch.manual_seed(0)
            cpu = torch.device("cpu")
            batches = training_batches(_Items(), _cfg(prefetch), 0, 1, cpu, 0, 0, None)
            for _ in range(5):  # into epoch 2
                next(batches)
            states[prefetch] = torch.rand(3)
            batches.close()
    assert torch.equal(states[0], states[2])


@pytest.mark.parametrize("stop", [3, 4])  # at the end of an epoch, and within one
def test_prefetching_trains_the_weights_of_loading_in_the_main_thread(
    stop, tiny_train_args, capsys
):
    """Audio augmentation draws from the global generator across three 3-batch epochs; a resumed
    run with the thread too (which validated at another step: that changes nothing either)."""
    aug = ("model.audio.speed_perturb=0.3", "train.schedule=constant")
    digests = []
    for prefetch in (0, 2):
        assert train.main(tiny_train_args(*aug, "train.steps=8", f"data.prefetch={prefetch}")) == 0
        digests.append(last_json(capsys.readouterr().out)["weights_digest"])
    sets = (*aug, f"train.steps={stop}", f"train.eval_every={stop}", "data.prefetch=2")
    assert train.main(tiny_train_args(*sets)) == 0
    run = last_json(capsys.readouterr().out)["run_dir"]
    assert train.main(["--resume", run, "--set", "train.steps=8", "--no-progress"]) == 0
    digests.append(last_json(capsys.readouterr().out)["weights_digest"])
    assert digests[0] == digests[1] == digests[2], digests
