"""Training with DataLoader worker processes: they keep decoding after the fork, and a signal
to the whole process group stops the run cleanly.

PyAV's frame scaler runs slice threads by default; a worker forked after the parent had scaled
a frame inherited that scaler, and freeing its threads (which did not survive the fork) waited
forever: training with ``data.preload: false`` and ``data.num_workers >= 1`` hung at step 0.
A scheduler's SIGTERM to the process group killed the workers (torch's handler), and the run
ended in a traceback without its checkpoint. Each run is a subprocess, so that a hang fails a
test instead of stalling the suite.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from bad_media import last_json
from conftest import TINY

ROOT = Path(__file__).resolve().parents[1]


def _command(run: Path, *sets: str) -> list[str]:
    cmd = [sys.executable, str(ROOT / "train.py"), "--run-dir", str(run)]
    return cmd + [a for s in [*TINY, *sets] for a in ("--set", s)] + ["--no-progress"]


def test_workers_forked_after_decoding_train(tiny_cache, tmp_path):
    cmd = _command(tmp_path / "run", "data.preload=false", "data.num_workers=1")
    env = {**os.environ, "AVSSL_CACHE": str(tiny_cache)}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert last_json(done.stdout)["step"] == 6


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_to_the_process_group_stops_cleanly(sig, tiny_cache, tmp_path):
    # as a scheduler (timeout, SLURM) or Ctrl-C in a terminal signal it: every process at once
    run = tmp_path / "run"
    cmd = _command(run, "data.num_workers=2", "train.steps=100000", "train.eval_every=2")
    env = {**os.environ, "AVSSL_CACHE": str(tiny_cache)}
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        start_new_session=True,
    )  # fmt: skip
    t0 = time.time()
    while not (run / "last.pt").exists():  # training, its workers started
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.time() - t0 < 120, "no checkpoint written"
        time.sleep(0.05)
    os.killpg(proc.pid, sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig and "Traceback" not in err, err[-2000:]
    assert err.count("stopping after this step") == 1  # the workers leave it to the run
    summary = last_json(out)
    assert summary["interrupted"] and summary["signal"] == sig
    assert f"{sig.name}: stopped at step {summary['step']}; checkpoint saved" in err
