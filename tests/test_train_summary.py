"""The summary ``train.py`` prints last (avssl/train/summary.py): the keys its documentation
lists, in that order, and the values of a session that trained nothing or was stopped."""

from __future__ import annotations

import re
import signal

from avssl.config import load_config
from avssl.train import cli
from avssl.train.finished import MEMORY_KEYS
from avssl.train.summary import VAL_KEYS, train_summary

ENTRY = {
    "precision": "fp32", "memory_mb": dict.fromkeys(MEMORY_KEYS, 1.0), "n_skipped": 3,
    "skipped": [{"split": "train", "id": "a", "reason": "gone"}],
}  # fmt: skip
BEST = {"step": 4, **dict.fromkeys(VAL_KEYS, 0.5)}


def _keys(obj) -> list[str]:
    """Every key of ``obj`` in order, each followed by its value's (a list's: its first item's)."""
    if isinstance(obj, list):
        return _keys(obj[0]) if obj else []
    if not isinstance(obj, dict):
        return []
    return [k for key, value in obj.items() for k in (key, *_keys(value))]


def test_the_summary_has_the_keys_the_command_documents_in_order():
    summary = train_summary(load_config(), "runs/x", 4, BEST, ENTRY, "d", None, 0.0)
    documented = cli.__doc__.split("one JSON object:")[1].split("}``")[0]
    assert re.findall(r'"(\w+)"', documented) == _keys(summary)


def test_a_session_that_trained_nothing_or_was_stopped():
    cfg = load_config(None, ["train.steps=10", "train.max_minutes=5"])
    idle = train_summary(cfg, "runs/x", 4, None, ENTRY, "d", None, 0.0)
    assert (idle["clips_per_s"], idle["data_wait_fraction"], idle["val"]) == (None, 0.0, None)
    assert idle["time_limited"] and not idle["interrupted"] and idle["stop_signal"] == 0
    stopped = train_summary(
        cfg, "runs/x", 4, BEST, ENTRY, "d", None, 0.0, seen=8, train_time=2.0, data_wait=2.0,
        signum=signal.SIGTERM, interrupted=True,
    )  # fmt: skip
    assert (stopped["clips_per_s"], stopped["data_wait_fraction"]) == (4.0, 0.5)
    assert not stopped["time_limited"]  # the signal stopped it, not train.max_minutes
    assert stopped["signal"] == stopped["stop_signal"] == signal.SIGTERM
    # a signal during the last step stops nothing, but is reported
    last = train_summary(cfg, "runs/x", 10, BEST, ENTRY, "d", None, 0.0, signum=signal.SIGINT)
    assert (last["signal"], last["stop_signal"], last["time_limited"]) == (0, signal.SIGINT, False)
