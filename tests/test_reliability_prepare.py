"""Every dataset preparation script against the bad-media table of issue 8.

Each script gets every case of :data:`bad_media.CASES` as one of its items, named the way that
dataset names its files. Whatever a case is, the run goes on: every item is written, missing or
unreadable (with a reason) in ``prepare_report.json``; the cases that are good clips are
written; the broken files are never written; ``--strict`` turns the first bad item into a
one-line error and exit status 2.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from bad_media import CASES, last_json, run
from conftest import MediaFactory
from test_prep_avdigits import digit_images, write_idx

from avssl.cli import main as cli
from avssl.data.manifest import read_manifest

BROKEN = {"missing", "empty", "not media", "truncated mp4"}  # never a usable item
HAS_SOUND = {c.name for c in CASES if c.train_ok} | {"audio file as video", "audio-only m4a"}
VIDEO_OK = {c.name for c in CASES if c.train_ok}


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory) -> dict[str, Path]:
    """Every case written once (the "missing" one does not exist)."""
    mf = MediaFactory(tmp_path_factory.mktemp("prep-bad"))
    return {c.name: c.make(mf) for c in CASES}


def _link(target: Path, link: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        link.symlink_to(target)


def _item_ids(names: list[str]) -> dict[str, str]:
    """A YouTube-id-like id for each case (11 characters, as in AudioSet and VGGSound)."""
    return {name: f"case{k:02d}xxxxx" for k, name in enumerate(names)}


def _audioset(files, tmp: Path) -> tuple[list[str], dict[str, str]]:
    ids = _item_ids(list(files))
    lines = ["# YTID, start_seconds, end_seconds, positive_labels"]
    for name, ytid in ids.items():
        lines.append(f'{ytid}, 0.000, 2.000, "/m/09x0r"')
        _link(files[name], tmp / "media" / f"{ytid}{files[name].suffix}")
    (tmp / "eval_segments.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    argv = ["audioset", "--segments", str(tmp / "eval_segments.csv"), "--media", str(tmp / "media")]
    return argv, {f"{ytid}_0": name for name, ytid in ids.items()}


def _vggsound(files, tmp: Path) -> tuple[list[str], dict[str, str]]:
    ids = _item_ids(list(files))
    lines = []
    for name, ytid in ids.items():
        lines.append(f"{ytid},0,a label,train")
        _link(files[name], tmp / "media" / f"{ytid}_000000{files[name].suffix}")
    (tmp / "vggsound.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    argv = ["vggsound", "--csv", str(tmp / "vggsound.csv"), "--media", str(tmp / "media")]
    return argv, {f"{ytid}_0": name for name, ytid in ids.items()}


def _flickr(files, tmp: Path) -> tuple[list[str], dict[str, str]]:
    """Each case is the id's video (an image + a sound file is the other Flickr layout)."""
    ids = {name: f"{10000 + k}" for k, name in enumerate(files)}
    xml = "<annotation><size><width>64</width><height>48</height></size><object><bndbox>"
    xml += "<xmin>8</xmin><ymin>8</ymin><xmax>40</xmax><ymax>40</ymax></bndbox></object>"
    (tmp / "ann").mkdir()
    for name, item in ids.items():
        _link(files[name], tmp / "media" / f"{item}{files[name].suffix}")
        (tmp / "ann" / f"{item}.xml").write_text(xml + "</annotation>\n", encoding="utf-8")
    (tmp / "flickr_test.csv").write_text("\n".join(ids.values()) + "\n", encoding="utf-8")
    argv = ["flickr", "--ids", str(tmp / "flickr_test.csv"), "--media", str(tmp / "media")]
    return [*argv, "--annotations", str(tmp / "ann")], {v: k for k, v in ids.items()}


def _esc50(files, tmp: Path) -> tuple[list[str], dict[str, str]]:
    lines, ids = ["filename,fold,target,category,esc10,src_file,take"], {}
    for k, name in enumerate(files):
        fname = f"{k % 5 + 1}-{100 + k}-A-{k % 2}.wav"
        lines.append(f"{fname},{k % 5 + 1},{k % 2},{'dog' if k % 2 else 'rain'},True,{k},A")
        _link(files[name], tmp / "root" / "audio" / fname)
        ids[fname.removesuffix(".wav")] = name
    (tmp / "root" / "meta").mkdir(parents=True)
    (tmp / "root" / "meta" / "esc50.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return ["esc50", "--root", str(tmp / "root")], ids


def _us8k(files, tmp: Path) -> tuple[list[str], dict[str, str]]:
    lines = ["slice_file_name,fsID,start,end,salience,fold,classID,class"]
    ids = {}
    for k, name in enumerate(files):
        fold, fname = k % 10 + 1, f"{100 + k}-{k % 2}-0-0.wav"
        lines.append(f"{fname},{100 + k},0.0,2.0,1,{fold},{k % 2},{'dog' if k % 2 else 'siren'}")
        _link(files[name], tmp / "root" / "audio" / f"fold{fold}" / fname)
        ids[fname.removesuffix(".wav")] = name
    (tmp / "root" / "metadata").mkdir(parents=True)
    meta = tmp / "root" / "metadata" / "UrbanSound8K.csv"
    meta.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return ["us8k", "--root", str(tmp / "root")], ids


def _avdigits(files, tmp: Path) -> tuple[list[str], dict[str, str]]:
    """Good 8 kHz takes of two speakers, and each case as another take of the first one."""
    fsdd, ids = tmp / "fsdd", {}
    fsdd.mkdir()
    t = np.arange(6000) / 8000
    for speaker in ("amy", "zed"):
        for digit in range(10):
            sf.write(fsdd / f"{digit}_{speaker}_1.wav", 0.3 * np.sin(2 * np.pi * 300 * t), 8000)
    for k, name in enumerate(files):
        stem = f"{k % 10}_amy_{10 + k}"
        if files[name].exists():  # the dataset is a folder: a file that is not there is no item
            _link(files[name], fsdd / f"{stem}.wav")
            ids[stem] = name
    x, y = digit_images(100, 0)
    images, labels = write_idx(tmp / "img.gz", x, 2051), write_idx(tmp / "lab.gz", y, 2049)
    argv = ["avdigits", "--fsdd", str(fsdd), "--mnist-images", str(images)]
    argv += ["--mnist-labels", str(labels), "--gallery-per-class", "1", "--test-speakers", "zed"]
    return argv, ids


DATASETS = {
    "audioset": (_audioset, VIDEO_OK),
    "vggsound": (_vggsound, VIDEO_OK),
    "flickr": (_flickr, VIDEO_OK),
    "esc50": (_esc50, HAS_SOUND),
    "us8k": (_us8k, HAS_SOUND),
    "avdigits": (_avdigits, HAS_SOUND),
}


@pytest.mark.parametrize("dataset", list(DATASETS))
def test_every_prepare_skips_counts_lists_and_strict(dataset, bad_files, tmp_path, capsys):
    make, good = DATASETS[dataset]
    argv, ids = make(bad_files, tmp_path)
    probe = [] if dataset == "avdigits" else ["--probe"]  # avdigits decodes every take anyway
    code, out, err = run(capsys, cli, ["prepare", *argv, *probe, "--out", str(tmp_path / "o")])
    assert code == 0, err
    summary = last_json(out)
    report = json.loads((tmp_path / "o" / "prepare_report.json").read_text(encoding="utf-8"))
    skipped = {item: reason for item, reason in report["missing_items"]}
    skipped |= {item: reason for item, reason in report["unreadable_items"]}
    assert all(isinstance(r, str) and r for r in skipped.values())
    written = {row.id: row for row in read_manifest(tmp_path / "o" / "manifest.jsonl")}
    cases_written = {ids[i] for i in written if i in ids}
    cases_skipped = {ids[i] for i in skipped if i in ids}
    assert cases_written | cases_skipped == set(ids.values())  # every item is accounted for
    assert not cases_written & cases_skipped
    assert good & set(ids.values()) <= cases_written, good - cases_written
    assert not cases_written & BROKEN, cases_written & BROKEN
    assert summary["missing"] + summary["unreadable"] == len(skipped)
    code, out, err = run(
        capsys, cli, ["prepare", *argv, *probe, "--strict", "--out", str(tmp_path / "s")]
    )
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, err
    assert err.startswith("error: ") and "--strict" in err, err
