"""A training step's statistics stay on the device: the methods' losses return them as detached
0-d tensors without reading them, and the loop reads them, all at once, only on the steps it
logs. On CUDA every read of a value (``float(t)``, ``t.item()``, ``t.tolist()``, ``if t:``) waits
for the device; here, on the CPU, the reads avssl's own code makes are counted instead."""

from __future__ import annotations

import collections
import contextlib
import sys
import threading
from pathlib import Path

import pytest
import torch
from test_models import make_batch

import avssl
import train
from avssl.config import load_config
from avssl.errors import TrainingError
from avssl.models import build_model
from avssl.models.stats import stats_floats
from avssl.train import loop, runtime

AVSSL = Path(avssl.__file__).parent
CONFIGS = AVSSL.parent / "configs"
READS = ("__float__", "__int__", "__bool__", "item", "tolist", "numpy", "cpu")


@contextlib.contextmanager
def counted_reads():
    """Counts, as ``"kind@avssl/file.py"``, the tensor reads made by avssl's code in this
    thread (torch's own, e.g. the CPU optimiser's step counters, are not counted) into the
    Counter it yields; ``sink[0]`` may be replaced to start a new count."""
    sink, thread = [collections.Counter()], threading.get_ident()
    originals = {name: getattr(torch.Tensor, name) for name in READS}
    own = {name: name in vars(torch.Tensor) for name in READS}  # else inherited from TensorBase

    def reader(name):
        def read(self, *args, **kwargs):
            caller = Path(sys._getframe(1).f_code.co_filename)
            if threading.get_ident() == thread and caller.is_relative_to(AVSSL):
                sink[0][f"{name}@{caller.relative_to(AVSSL.parent)}"] += 1
            return originals[name](self, *args, **kwargs)

        return read

    try:
        for name in READS:
            setattr(torch.Tensor, name, reader(name))
        yield sink
    finally:  # torch.Tensor as it was: an inherited method is not left copied onto it
        for name, original in originals.items():
            if own[name]:
                setattr(torch.Tensor, name, original)
            else:
                delattr(torch.Tensor, name)


def test_counting_leaves_torch_tensor_as_it_was():
    before = dict(vars(torch.Tensor))
    with counted_reads() as reads:
        assert torch.tensor(2.0).item() == 2.0 and reads[0] == {}  # not avssl's read
    assert dict(vars(torch.Tensor)) == before


# the reads each loss makes: the pair classifiers ask once whether the batch's negatives hold
# easy and hard ones (which stats to report; contrastive knows it from the shapes), the domain
# adversary whether any row has a known domain (else it adds nothing)
CASES = {
    "l3": ([], {"tolist@avssl/models/stats.py": 1}),
    "avenet": ([], {"tolist@avssl/models/stats.py": 1}),
    "avolnet": ([], {"tolist@avssl/models/stats.py": 1}),
    "avolnet-batch": (["loss.pair_negatives=batch", "loss.mask_same_label=true"], {}),
    "contrastive": ([], {}),
    "contrastive-no-hard": (["loss.hard_negatives=false"], {}),
    "contrastive-adversary": (
        ["loss.domain_adversary=0.5", "loss.domains=[a,b,c]", "model.audio_views=2"],
        {"__bool__@avssl/models/adversary.py": 1},
    ),
    "contrastive-masked": (["loss.mask_same_label=true"], {}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_losses_return_detached_0d_tensors_without_reading_them(case):
    sets, expected = CASES[case]
    cfg = load_config(CONFIGS / f"{case.split('-')[0]}.yaml", sets)
    torch.manual_seed(0)
    model = build_model(cfg.model, cfg.data, cfg.loss).train()
    batch = make_batch(cfg, 6)
    if cfg.loss.domain_adversary:
        batch["domain"] = torch.tensor([0, 1, 2, 0, -1, 1])
    with counted_reads() as reads:
        loss, stats = model.loss(batch)
    assert reads[0] == expected
    assert {"loss", "acc"} <= set(stats)
    assert all(isinstance(v, torch.Tensor) and v.dim() == 0 for v in stats.values())
    assert not any(v.requires_grad for v in stats.values())
    if "domain_loss" not in stats:  # else "loss" is the correspondence loss alone
        assert stats["loss"].item() == loss.item()
    floats = stats_floats(stats)
    assert list(floats) == list(stats)  # the logged row keeps the keys' order
    assert floats == {k: float(v) for k, v in stats.items()}  # exactly, not approximately


def test_stats_floats_reads_every_tensor_at_once_and_exactly():
    values = [1 / 3, 0.07000000029802322, 2.5e-8, 123456.789]
    stats = {
        "f32": torch.tensor(values[0]),
        "custom": 0.25,  # a custom method's Python float is kept
        "bf16": torch.tensor(values[1], dtype=torch.bfloat16),
        "f16": torch.tensor(values[2], dtype=torch.float16),
        "one": torch.tensor([values[3]]),  # one element, as float() takes it
        "count": torch.tensor(7),
    }
    with counted_reads() as reads:
        floats = stats_floats(stats)
    assert reads[0] == {"tolist@avssl/models/stats.py": 1}
    assert list(floats) == list(stats)
    for key, value in stats.items():
        assert floats[key] == float(value) and type(floats[key]) is type(float(value))
    assert stats_floats({}) == {} and stats_floats({"x": 1.5}) == {"x": 1.5}
    for bad in (torch.zeros(2), torch.zeros(0)):  # named, at the first step logged
        with pytest.raises(TrainingError, match=r"statistic 'x' is a tensor of shape \[\d\]"):
            stats_floats({"loss": torch.tensor(1.0), "x": bad})


def test_the_loop_reads_stats_only_on_the_steps_it_logs(tiny_train_args, monkeypatch):
    """Steps 1 and 2 of 3 are not logged (``train.log_every=3``) and validate nothing: they
    read no value back but the non-finite-loss check and the contrastive loss's branch on
    the clips with time-shifted windows; step 3 adds one read, of all its stats at once."""
    steps, logged = [], []
    forward, floats = runtime.LossModule.forward, loop.stats_floats

    def counted_forward(self, batch):  # a step's reads: from its forward pass to the next one
        steps.append(collections.Counter())
        reads[0] = steps[-1]
        return forward(self, batch)

    def counted_floats(stats):
        logged.append(len(steps))
        return floats(stats)

    monkeypatch.setattr(runtime.LossModule, "forward", counted_forward)
    monkeypatch.setattr(loop, "stats_floats", counted_floats)
    args = tiny_train_args("train.steps=3", "train.log_every=3", "train.eval_every=100")
    with counted_reads() as reads:
        assert train.main(args) == 0
    assert logged == [3] and len(steps) == 3
    first, second, last = steps
    assert first == second
    assert all(key.startswith("__bool__@") for key in first)
    assert first["__bool__@avssl/train/loop.py"] == 1  # the loss's torch.isfinite, kept
    assert sum(first.values()) <= 2
    assert last["tolist@avssl/models/stats.py"] == 1
