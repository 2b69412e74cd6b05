"""DataLoader workers forked after the main process decoded video keep decoding.

PyAV's frame scaler runs slice threads by default; a worker forked after the parent had scaled
a frame inherited that scaler, and freeing its threads (which did not survive the fork) waited
forever: training with ``data.preload: false`` and ``data.num_workers >= 1`` hung at step 0.
The run is a subprocess so that a hang fails the test instead of stalling the suite.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bad_media import last_json
from conftest import TINY

ROOT = Path(__file__).resolve().parents[1]


def test_workers_forked_after_decoding_train(tiny_cache, tmp_path):
    sets = [*TINY, "data.preload=false", "data.num_workers=1", "train.eval_every=3"]
    cmd = [sys.executable, str(ROOT / "train.py"), "--run-dir", str(tmp_path / "run")]
    cmd += [a for s in sets for a in ("--set", s)] + ["--no-progress"]
    env = {**os.environ, "AVSSL_CACHE": str(tiny_cache)}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert last_json(done.stdout)["step"] == 6
