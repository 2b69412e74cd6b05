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


def test_out_never_replaces_what_the_evaluation_reads(tiny_cache, tmp_path, capsys):
    # the run's files when --checkpoint names a file in it, and the manifest of the checkpoint's
    # config (no --data): --force or not
    from avssl.data.source import manifest_path
    from avssl.train.checkpoint import checkpoint_config, load_checkpoint

    sets = [*TINY, "train.steps=2", "train.eval_every=2", f"train.runs_dir={tmp_path}"]
    assert train.main([a for s in sets for a in ("--set", s)] + ["--no-progress"]) == 0
    run = next(tmp_path.iterdir())
    manifest = manifest_path(checkpoint_config(load_checkpoint(run / "best.pt")).data)
    before = {p: p.read_bytes() for p in (run / "last.pt", run / "config.yaml", manifest)}
    capsys.readouterr()
    for out in before:
        argv = ["avc", "--checkpoint", str(run / "best.pt"), "--out", str(out), "--force"]
        assert evaluate.main([*argv, "--no-progress"]) == 2
        err = capsys.readouterr().err
        errors = [x for x in err.splitlines() if x.startswith("error")]  # (others: notes)
        assert len(errors) == 1 and "never overwrites" in errors[0] and "Traceback" not in err
    assert all(p.read_bytes() == b for p, b in before.items())
