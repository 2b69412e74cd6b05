"""``evaluate.py classify`` on ESC-50 or UrbanSound8K clips of one official fold: the
leave-one-fold-out protocol is refused in one line naming the dataset (and the protocol that
works), before any clip is decoded. Until 2026-12-08 the line named neither and came after
every clip had been decoded."""

import json

from test_classify import make_esc50

import evaluate
from avssl.eval import clip_features


def _run(capsys, *args) -> tuple[int, str, str]:
    code = evaluate.main(["classify", *args, "--features", "logmel", "--no-progress"])
    out, err = capsys.readouterr()
    return code, out, err.strip()


def test_one_official_fold_is_one_line_naming_the_root(tmp_path, capsys, monkeypatch):
    root = make_esc50(tmp_path / "esc", folds=(4,), per_fold=3)
    decoded = []
    real = clip_features.load_clip
    monkeypatch.setattr(
        clip_features, "load_clip", lambda *a, **k: decoded.append(a[0]) or real(*a, **k)
    )
    code, out, err = _run(capsys, "--dataset", "esc50", "--root", str(root))
    assert code == 2 and out == "" and not decoded
    assert err == (
        f"error: {root}: leave-one-fold-out needs at least two folds, found ['4']; "
        "--protocol kfold splits the clips by source recording instead"
    )


def test_a_fold_left_without_readable_clips_names_the_root(tmp_path, capsys):
    root = make_esc50(tmp_path / "esc", folds=(1, 2), per_fold=2)
    for wav in (root / "audio").glob("1-*.wav"):
        wav.write_bytes(b"")
    code, out, err = _run(capsys, "--dataset", "esc50", "--root", str(root))
    assert code == 2 and err.startswith(f"error: {root}: leave-one-fold-out needs")
    code, out, _ = _run(capsys, "--dataset", "esc50", "--root", str(root), "--protocol",
                        "kfold", "--folds", "2")  # fmt: skip
    assert code == 0 and json.loads(out.splitlines()[-1])["n_skipped"] == 2 * 3
