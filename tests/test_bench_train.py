"""The training-throughput benchmark's random batch is shaped as the training loader makes it,
so the benchmark times the same model work as ``train.py``."""

import torch
from conftest import TINY

from avssl.config import load_config
from avssl.data.source import load_split
from avssl.tools.bench_train import random_batch
from avssl.train.data import make_loader, to_device


def _loader_batch(cfg, batch_size: int) -> dict:
    ds = load_split(cfg.data, "train", True, seed=0, progress=False)
    cpu = torch.device("cpu")
    raw = next(iter(make_loader(ds, batch_size, 0, 0, 0, 1, 0, 0, cpu)))
    return to_device(raw, cpu, cfg.train.channels_last)


def test_random_batch_matches_the_loaders_keys_shapes_and_dtypes(tiny_cache):
    cfg = load_config(None, TINY)
    real, fake = _loader_batch(cfg, 4), random_batch(cfg, 4)
    assert set(fake) <= set(real)
    for key, value in fake.items():
        assert value.shape == real[key].shape and value.dtype == real[key].dtype, key
    assert fake["frames"].is_contiguous(memory_format=torch.channels_last)
    # the synthetic world's 2.5-s clips have time-shifted windows, and so has the random batch
    assert bool(real["hard_valid"].all()) and bool(fake["hard_valid"].all())


def test_no_hard_windows_without_hard_negatives_in_the_data():
    cfg = load_config(None, [*TINY, "data.hard_fraction=0"])
    fake = random_batch(cfg, 4)
    assert not fake["hard_valid"].any() and not fake["neg_hard"].any()


def _dies(queue):
    import os

    os._exit(9)  # killed before it could send its summary (out of memory, a crash)


def _sends(queue):
    queue.put(({"ok": 1}, 12.0))


def test_a_training_child_that_dies_is_reported_not_waited_for():
    import multiprocessing

    from avssl.tools.bench_train import _result

    ctx = multiprocessing.get_context("spawn")
    for target, want in ((_dies, (None, 0.0)), (_sends, ({"ok": 1}, 12.0))):
        queue = ctx.Queue()
        child = ctx.Process(target=target, args=(queue,))
        child.start()
        assert _result(child, queue, poll_s=0.5) == want
        child.join()


def test_the_training_child_makes_no_process_semaphore_for_its_progress_bars(monkeypatch):
    """The child is killed when the bench is stopped: tqdm's default lock, a process semaphore,
    was then left behind, and the resource tracker warned of it after the ``error:`` line."""
    import queue
    import threading

    from tqdm import tqdm

    from avssl.tools.bench_train import _train_child

    monkeypatch.setattr(tqdm, "_lock", tqdm.get_lock())  # tqdm class state, given back after
    sent = queue.Queue()
    _train_child(["--set", "train.lr=-1", "--no-progress"], sent)  # refused at once: no summary
    assert sent.get_nowait()[0] is None
    assert isinstance(tqdm.get_lock(), type(threading.RLock()))
