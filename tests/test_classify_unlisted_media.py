"""``evaluate.py classify`` counts the media files of a folder dataset it cannot use: a media
name linking to nothing or naming no regular file (a class folder, or an UrbanSound8K ``fold*/``
folder) and, without ``metadata/UrbanSound8K.csv``, a file whose name does not give its class.
Until 2026-12-08 they were dropped without a word (``n_skipped`` 0)."""

import os
import shutil

from bad_media import last_json
from test_classify import make_folder, make_us8k

import evaluate


def _run(capsys, *args) -> tuple[int, str, str]:
    code = evaluate.main(["classify", *args, "--features", "logmel", "--no-progress"])
    out, err = capsys.readouterr()
    return code, out, err.strip()


def test_folder_counts_links_to_nothing(tmp_path, capsys):
    root = make_folder(tmp_path / "f")
    label = sorted(p.name for p in root.iterdir())[0]
    broken = root / label / "gone.wav"
    broken.symlink_to(tmp_path / "missing.wav")
    loop = root / label / "loop.wav"
    loop.symlink_to(loop)
    (root / label / "sub.wav").mkdir()  # a folder is not a clip
    args = ["--dataset", "folder", "--root", str(root), "--folds", "3"]
    code, out, _ = _run(capsys, *args)
    res = last_json(out)
    assert code == 0 and res["n_clips"] == 24 and res["n_skipped"] == 2
    # the reasons avssl index and embed give (media_checks.broken_link); until 2026-12-08 one
    # of its own, "a link to nothing (missing target or a loop)", for both
    reason = f"no such file (a broken link to {tmp_path / 'missing.wav'})"
    assert res["skipped"] == [
        {"path": str(broken), "reason": reason},
        {"path": str(loop), "reason": "is a symlink loop"},
    ]
    code, _, err = _run(capsys, *args, "--strict")
    assert code == 2 and err == f"error: {broken}: {reason}"


def test_folder_counts_media_names_of_no_regular_file(tmp_path, capsys):
    # a FIFO named as a sound was dropped without a word, and a link to one was called a link
    # to nothing; avssl index says "not a regular file" of both
    root = make_folder(tmp_path / "f")
    label = sorted(p.name for p in root.iterdir())[0]
    fifo = root / label / "pipe.wav"
    os.mkfifo(fifo)
    linked = root / label / "to pipe.wav"
    linked.symlink_to(fifo)
    args = ["--dataset", "folder", "--root", str(root), "--folds", "3"]
    code, out, _ = _run(capsys, *args)
    res = last_json(out)
    assert code == 0 and res["n_clips"] == 24 and res["n_skipped"] == 2
    assert res["skipped"] == [
        {"path": str(fifo), "reason": "not a regular file"},
        {"path": str(linked), "reason": "not a regular file"},
    ]
    code, _, err = _run(capsys, *args, "--strict")
    assert code == 2 and err == f"error: {fifo}: not a regular file"


def test_us8k_without_csv_counts_files_it_cannot_class(tmp_path, capsys):
    root = make_us8k(tmp_path / "u", with_csv=False)
    fold1 = root / "audio" / "fold1"
    first = sorted(fold1.iterdir())[0]
    renamed = fold1 / "my clip.wav"
    shutil.copy(first, renamed)
    broken = fold1 / "501-0-0-9.wav"
    broken.symlink_to(tmp_path / "missing.wav")
    code, out, _ = _run(capsys, "--dataset", "us8k", "--root", str(root))
    res = last_json(out)
    assert code == 0 and res["n_clips"] == 18 and res["n_skipped"] == 2
    assert {s["path"]: s["reason"] for s in res["skipped"]} == {
        str(broken): f"no such file (a broken link to {tmp_path / 'missing.wav'})",
        str(renamed): "name is not fsID-classID-occurrence-slice (no metadata/UrbanSound8K.csv)",
    }
    code, _, err = _run(capsys, "--dataset", "us8k", "--root", str(root), "--strict")
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 0
