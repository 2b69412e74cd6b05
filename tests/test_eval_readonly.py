"""Test-set selection is impossible by construction: evaluating never changes a run's choices.

Every ``evaluate.py`` subcommand is run against a run directory; afterwards every file that
training wrote (weights, best/last choice, config, metrics log) is byte-identical, and the only
new file in the run is the human-readable ``report.md``.
"""

import hashlib
from pathlib import Path

import evaluate
import train
from tests.conftest import TINY

ROOT = Path(__file__).resolve().parents[1]


def _digests(run: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(run.iterdir())}


def test_evaluations_leave_the_run_untouched(tiny_cache, tmp_path, capsys):
    sets = [*TINY, "train.steps=4", "train.eval_every=2", f"train.runs_dir={tmp_path}"]
    args = ["--config", str(ROOT / "configs/contrastive.yaml"), "--no-progress"]
    assert train.main(args + [a for s in sets for a in ("--set", s)]) == 0
    run = next(tmp_path.iterdir())
    before = _digests(run)
    assert {"best.pt", "last.pt", "config.yaml", "metrics.jsonl"} <= set(before)
    for sub, extra in [
        ("avc", []),
        ("retrieval", []),
        ("localize", []),
        ("sync", ["--max-offset", "0.2"]),
    ]:
        for ckpt in (run, run / "best.pt"):
            argv = [sub, "--checkpoint", str(ckpt), "--no-progress", *extra]
            assert evaluate.main(argv) == 0, sub
    capsys.readouterr()
    after = _digests(run)
    assert set(after) - set(before) == {"report.md"}
    assert {k: after[k] for k in before} == before
    report = (run / "report.md").read_text()
    assert report.count("## ") == 8  # each evaluation appended its table, twice
