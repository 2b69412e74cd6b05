"""AV-Digits: real spoken digits (FSDD) paired with canvases of real handwriting (MNIST).

Each item is one FSDD utterance, written as a 1.0-s 8 kHz wav (its DC offset removed unless
``--keep-dc``; a shorter recording centred in silence, a longer one trimmed to its loudest
second), and a ``grid x grid`` PNG mosaic of MNIST digits in which exactly one cell shows the
spoken digit; the other cells show other digits (all different when ``grid**2 <= 10``). The
spoken digit's cell is the sound source (``boxes.sources``); the other cells are
``boxes.distractors``. A model that localises the source must tie the sound of a word to the
shape of a handwritten digit, and neither speakers nor handwriting are shared across splits.

Splits:
    * audio, by speaker: the test speakers' recordings are the test split. Speakers named with
      ``--test-speakers`` must all be present; by default the test speakers are theo and
      yweweler, those of them present, or else the alphabetically last present speaker (the
      report says so). Validation is carved from the training speakers: by default the takes
      whose number is a multiple of 10 (takes 0, 10, 20, 30, 40: 10% of FSDD's 50 takes), or all
      recordings of ``--val-speaker``. Speaker names differing only in case
      (``3_Nicolas_5.wav`` beside ``0_nicolas_0.wav``) are refused: one voice, two splits.
    * images, by MNIST index: each image of ``--mnist-images`` belongs to exactly one split
      (seeded, stratified by digit). With ``--test-mnist-*`` files the test canvases use only
      those images and the main file is shared by train and val only.

Also written: ``gallery.jsonl`` (single-digit test images for class-level audio->image
retrieval, split "test", no audio), ``gallery_val.jsonl`` (the same of validation images, split
"val": the gallery of an evaluation that chooses anything) and ``items.jsonl`` (speaker, take and
the MNIST image of each cell of every canvas, for audits). With ``--val-speaker``,
``heldout.jsonl`` evaluates a model on that voice with the test-split commands: one canvas per
training recording (split "train", the probe's training data) and the validation voice's rows
as split "test"; its retrieval gallery is ``gallery_val.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import zlib
from pathlib import Path

import numpy as np
import soundfile as sf
from PIL import Image

from avssl.cli_outputs import check_outputs_spare_inputs
from avssl.data.manifest import Row, write_manifest
from avssl.errors import AvsslError, MediaError
from avssl.prep.avdigits_args import build_parser, check_fractions
from avssl.prep.avdigits_splits import (
    audio_split,
    check_digits,
    check_speaker_case,
    check_splits,
    heldout_rows,
    image_pools,
    pool_by_digit,
    shared_images,
    speakers_read,
    split_speakers,
)
from avssl.prep.canvas import cell_box, choose_cells, render_canvas, render_single
from avssl.prep.mnist import fixed_length, list_fsdd, read_mnist, read_recording
from avssl.prep.new_outputs import NewOutputs
from avssl.prep.report import OUTPUTS, PrepReport, check_output

SAMPLE_RATE = 8000
CLIP_SECONDS = 1.0
GALLERY, GALLERY_VAL = "gallery.jsonl", "gallery_val.jsonl"
HELDOUT = "heldout.jsonl"
ITEMS = "items.jsonl"


def main(argv: list[str] | None = None) -> int:
    """``avssl prepare avdigits``: write the canvases, audio, manifest, gallery and report."""
    args = build_parser().parse_args(argv)
    out: Path = args.out
    for flag, value, top in (("--canvases-per-recording", args.canvases_per_recording, 1000),
                             ("--grid", args.grid, 16), ("--canvas-size", args.canvas_size, 4096),
                             ("--gallery-per-class", args.gallery_per_class, 100_000)):  # fmt: skip
        if not 1 <= value <= top:
            raise AvsslError(f"{flag}: must be between 1 and {top}, got {value}")
    if args.canvas_size % args.grid:
        raise AvsslError(
            f"--canvas-size {args.canvas_size} is not a multiple of --grid {args.grid}"
        )
    if (args.test_mnist_images is None) != (args.test_mnist_labels is None):
        raise AvsslError("--test-mnist-images and --test-mnist-labels go together")
    check_fractions(args)
    # heldout.jsonl always: one left by an earlier run would describe canvases this one replaces
    files = (*OUTPUTS, GALLERY, GALLERY_VAL, ITEMS, HELDOUT)
    check_outputs_spare_inputs(out, args, files, folders=("audio", "images", "gallery"))
    check_output(out, args.force, files, folders=("audio", "images", "gallery"))
    report = PrepReport("avdigits", args.strict)
    # a run that fails part-way removes what it created, so the corrected rerun needs no --force
    with report.made.removed_on_failure() as made:
        return _prepare(args, report, made)


def _prepare(args: argparse.Namespace, report: PrepReport, made: NewOutputs) -> int:
    """Read the inputs and write every output of :func:`main` (its checks passed)."""
    out: Path = args.out
    images = {"main": read_mnist(args.mnist_images, args.mnist_labels)}
    if args.test_mnist_images is not None:
        images["test"] = read_mnist(args.test_mnist_images, args.test_mnist_labels)
    pixels = {k: v[0] for k, v in images.items()}
    labels = {k: v[1] for k, v in images.items()}
    n_test_file = len(labels["test"]) if "test" in labels else None
    shared = None if n_test_file is None else shared_images(pixels["main"], pixels["test"])
    if shared is not None and len(shared):
        if len(shared) == len(labels["main"]):
            raise AvsslError(
                f"{args.test_mnist_images}: holds every image of {args.mnist_images}; the test "
                "handwriting must be unseen"
            )
        report.note(
            f"{len(shared)} images of {args.mnist_images} are also in {args.test_mnist_images}:"
            " left out of training and validation"
        )
    pools = image_pools(
        labels["main"], n_test_file, args.mnist_test_fraction, args.mnist_val_fraction,
        args.seed, shared,
    )  # fmt: skip
    by_digit = {s: pool_by_digit(pool, labels) for s, pool in pools.items()}
    test_file = args.mnist_images if n_test_file is None else args.test_mnist_images
    check_digits(by_digit, {"train": args.mnist_images, "val": args.mnist_images,
                            "test": test_file})  # fmt: skip

    recordings, other = list_fsdd(args.fsdd)
    for name in other:
        report.skip_unreadable(name, "name is not {digit}_{speaker}_{take}.wav")
    first: dict[str, Path] = {}  # 0_amy_01.wav and 0_amy_1.wav: one id, one audio file
    for rec in recordings:
        if rec.id in first:
            report.skip_unreadable(rec.path.name, f"the same recording as {first[rec.id].name}")
        first.setdefault(rec.id, rec.path)
    recordings = [r for r in recordings if first[r.id] == r.path]
    if args.max_takes is not None:
        recordings = [r for r in recordings if r.take < args.max_takes]
    check_speaker_case(recordings, args.fsdd)  # of the recordings used: --max-takes may drop one
    if not recordings:
        raise AvsslError(f"{args.fsdd}: no FSDD recordings ({{digit}}_{{speaker}}_{{take}}.wav)")
    present = sorted({r.speaker for r in recordings})
    test, val_speaker = split_speakers(present, args.test_speakers, args.val_speaker, report)
    check_splits(recordings, test, val_speaker, report, args.fsdd)

    if args.force:  # a run stopped part-way must not leave the old manifest over new canvases
        for name in (*OUTPUTS, GALLERY, GALLERY_VAL, ITEMS, HELDOUT):
            (out / name).unlink(missing_ok=True)
    made.folder(out / "audio")
    made.folder(out / "images")
    items, offsets = [], {}
    failed: dict[str, str] = {}  # speaker -> "ID: reason" of their first recording not decoded
    for rec in recordings:
        split = audio_split(rec, test, val_speaker)
        try:
            wave = read_recording(rec.path, SAMPLE_RATE)
        except MediaError as err:
            report.skip_unreadable(rec.id, err.reason)
            failed.setdefault(rec.speaker, f"{rec.id}: {err.reason}")
            continue
        offsets.setdefault(rec.speaker, []).append(float(wave.mean()) if len(wave) else 0.0)
        n = round(CLIP_SECONDS * SAMPLE_RATE)
        wave = fixed_length(wave, n, remove_dc=not args.keep_dc, centre_trim=args.centre_trim)
        sf.write(made.file(out / "audio" / f"{rec.id}.wav"), wave, SAMPLE_RATE, subtype="PCM_16")
        n_canvases = args.canvases_per_recording if split == "train" else 1
        for k in range(n_canvases):
            seed = [args.seed, zlib.crc32(rec.id.encode())] + ([k] if k else [])
            row_id = rec.id if k == 0 else f"{rec.id}-c{k}"
            rng = np.random.default_rng(seed)
            source, cell_digits = choose_cells(rng, rec.digit, args.grid)
            cells = []
            for d in cell_digits:
                choices = by_digit[split][d]
                cells.append(choices[int(rng.integers(len(choices)))])
            canvas = render_canvas([pixels[s][i] for s, i in cells], args.grid, args.canvas_size)
            Image.fromarray(canvas).save(made.file(out / "images" / f"{row_id}.png"))
            boxes = {
                "sources": [cell_box(source, args.grid)],
                "distractors": [cell_box(c, args.grid) for c in range(len(cells)) if c != source],
            }
            report.add(
                Row(
                    id=row_id,
                    image=f"images/{row_id}.png",
                    audio=f"audio/{rec.id}.wav",
                    start=0.0,
                    end=CLIP_SECONDS,
                    labels=[str(rec.digit)],
                    split=split,
                    boxes=boxes,
                    frame_labels=[str(d) for d in cell_digits],
                    domain=rec.speaker,
                )
            )
            items.append(
                {"id": row_id, "split": split, "speaker": rec.speaker, "take": rec.take,
                 "source_cell": source, "digits": cell_digits, "mnist": [list(c) for c in cells]}
            )  # fmt: skip

    test = speakers_read(test, items, report, failed, args)
    gallery = _write_gallery(out, pools["test"], pixels, labels, args, made, GALLERY, "test")
    gallery_val = _write_gallery(out, pools["val"], pixels, labels, args, made, GALLERY_VAL, "val")
    for name, pool in ((GALLERY, pools["test"]), (GALLERY_VAL, pools["val"])):
        per_digit = [len(images) for images in pool_by_digit(pool, labels).values()]
        low, high = min(per_digit), min(max(per_digit), args.gallery_per_class)
        if low < args.gallery_per_class:  # its classes are then unequal, or all short
            span = f"{low}" if low == high else f"{low}-{high}"
            report.note(
                f"{name}: {span} images per digit, fewer than --gallery-per-class "
                f"{args.gallery_per_class} (the split holds no more)"
            )
    if val_speaker is not None:
        write_manifest(made.file(out / HELDOUT), heldout_rows(report.rows))
    with open(made.file(out / ITEMS), "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(item) + "\n" for item in items)
    report.extra = {
        "speakers": {
            "test": test,
            "val": [val_speaker] if val_speaker else "takes % 10 == 0 of the training speakers",
            "train": sorted({i["speaker"] for i in items if i["split"] == "train"}),
        },
        "mnist_images": {s: len(p) for s, p in pools.items()},
        "gallery": {"manifest": str(out / GALLERY), "rows": gallery},
        "gallery_val": {"manifest": str(out / GALLERY_VAL), "rows": gallery_val},
        "items": str(out / ITEMS),
        "dc_offset_removed": not args.keep_dc,
        "trim": "centre" if args.centre_trim else "loudest second",
        "dc_offset_max_abs": {k: round(max(map(abs, v)), 5) for k, v in offsets.items()},
    }
    if val_speaker is not None:
        report.extra["heldout"] = str(out / HELDOUT)
    return report.finish(out, args.force)


def _write_gallery(out: Path, pool, pixels, labels, args, made: NewOutputs, name, split) -> int:
    """Single-digit images of one split's ``pool`` (:func:`render_single`),
    ``--gallery-per-class`` per digit, into the manifest ``name``; returns the row count."""
    made.folder(out / "gallery")
    rows, counts = [], dict.fromkeys(range(10), 0)
    for src, i in pool:
        digit = int(labels[src][i])
        if counts[digit] >= args.gallery_per_class:
            continue
        counts[digit] += 1
        stem = f"{src}_{i}"  # the pools are disjoint: one image, one file
        img = render_single(pixels[src][i], args.grid, args.canvas_size)
        Image.fromarray(img).save(made.file(out / "gallery" / f"{stem}.png"))
        rows.append(Row(id=f"gallery_{stem}", image=f"gallery/{stem}.png", labels=[str(digit)],
                        split=split))  # fmt: skip
    return write_manifest(made.file(out / name), rows)
