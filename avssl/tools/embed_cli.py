"""``avssl embed``: write a checkpoint's audio and visual embeddings of media files to disk.

usage: avssl embed --checkpoint CKPT --inputs PATH... --out DIR [--hop S]
                   [--layer embedding|tower|grid] [--unit] [--force] [--prune] [--strict]

Every window of every file (as ``avssl index`` places them: ``window / 2 + k * hop`` seconds,
each stream on its own) gets the model's audio embedding of the sound around its centre and its
visual embedding of the frame showing there, as OpenL3's command-line tool writes one ``.npz``
of embeddings and timestamps per file (https://github.com/marl/openl3). The folder's layout is
described in :mod:`avssl.tools.embed_store`. A second run into the same folder embeds only new
and changed files (size or modification time) and keeps the rest, including files it was not
given this time and, unless ``--prune``, files deleted since (counted as ``gone``); one with
other settings (checkpoint weights, the config keys that change what they compute
(:mod:`avssl.model_inputs`: front end, window, frame size), method, hop, layer, ``--unit``) is
refused unless ``--force`` replaces the folder's embeddings, which it does only
once its first file is embedded (a folder whose files were all dropped takes other settings).
Unreadable files (and files outside the folder's root) are skipped and listed in the JSON summary
printed as the last stdout line; ``--strict`` makes the first one an error.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
import time
from pathlib import Path

from avssl.cli import ArgumentParser, names_json, one_line, positive_float
from avssl.cli_checkpoint import load_command_model
from avssl.errors import AvsslError, MediaError, skip_fields
from avssl.folder_lock import hold_output_folder
from avssl.model_inputs import input_settings
from avssl.models import embedding_dims
from avssl.tools import embed_store as store
from avssl.tools import index_media as media
from avssl.tools.embed_gone import gone_rows
from avssl.tools.index_media import MAX_HOP, MIN_HOP

DEFAULT_HOP = 0.1  # OpenL3's default hop
SAVE_EVERY_S = 30.0  # the record is rewritten this often, so a killed run loses little


def _parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="avssl embed", description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True, help="checkpoint file or run directory")
    media.add_inputs_argument(p, required=True)
    p.add_argument("--out", required=True, help="output folder (created, or added to)")
    p.add_argument(
        "--hop",
        type=positive_float,
        default=DEFAULT_HOP,
        help=f"seconds between window centres, {MIN_HOP:g} to {MAX_HOP:g} (default "
        f"{DEFAULT_HOP:g})",
    )
    p.add_argument(
        "--layer",
        choices=("embedding", "tower", "grid"),
        default="embedding",
        help="audio rows: the method's embedding (default), the audio tower's pooled output "
        "before the head, or its last map max-pooled to L3's 4 x 3 grid; visual rows are "
        "always the method's visual embedding",
    )
    p.add_argument("--unit", action="store_true", help="L2-normalise every row")
    p.add_argument(
        "--force", action="store_true", help="replace embeddings of other settings in --out"
    )
    p.add_argument(
        "--prune", action="store_true",
        help="drop the rows of recorded files that no longer exist (kept otherwise, and counted)",
    )  # fmt: skip
    p.add_argument("--strict", action="store_true", help="stop at the first unreadable file")
    p.add_argument("--device", default="cpu", help="cpu | auto | cuda[:N]")
    p.add_argument("--quiet", action="store_true", help="no per-file lines on stderr")
    return p


def _check_args(args) -> None:
    if not MIN_HOP <= args.hop <= MAX_HOP:  # a window every sample: memory, not features
        raise AvsslError(f"--hop: must be in [{MIN_HOP:g}, {MAX_HOP:g}] s, got {args.hop:g}")
    for x in args.inputs:
        if not Path(x).exists():
            raise AvsslError(f"{x}: no such file or folder (an input; nothing written)")


def _names(paths: list[Path], root: Path, skipped: list[dict]) -> dict[Path, str]:
    """Each file's name relative to ``root``; a file outside it is skipped (added to
    ``skipped``): a folder's names stay relative to the root of its first run."""
    names = {}
    for p in paths:
        try:
            names[p] = p.relative_to(root).as_posix()
        except ValueError:
            why = f"outside {root}, which this folder's names are relative to (use another --out)"
            skipped.append({"path": str(p), "reason": why})
    return names


def _root(paths: list[Path], inputs: list[str]) -> Path:
    """The deepest folder holding every one of ``paths`` and every input folder (absolute): a
    file added later to a new subfolder of an input folder is still inside it."""
    dirs = [os.path.abspath(x) for x in inputs if Path(x).is_dir()]
    return Path(os.path.commonpath([str(p.parent) for p in paths] + dirs))


def main(argv: list[str] | None = None) -> int:
    """``avssl embed``; the last stdout line is a JSON summary."""
    args = _parser().parse_args(argv)
    _check_args(args)
    from avssl.tools.index import weights_hash
    from avssl.train.runtime import resolve_device

    t0 = time.perf_counter()
    model, cfg, state = load_command_model(args.checkpoint, resolve_device(args.device, "--device"))
    model.eval()
    model.audio_layer = args.layer
    settings = {
        "checkpoint_sha256": weights_hash(model),
        "hop": args.hop,
        "layer": args.layer,
        "unit": args.unit,
        "method": cfg.model.method,
        "window": cfg.data.window,
        "sample_rate": cfg.data.sample_rate,
        "frame_size": cfg.data.frame_size,
        # the data keys among them are the ones above
        "inputs": {k: v for k, v in input_settings(cfg).items() if k.startswith("model.")},
    }
    # named by the path they were found by: a linked file keeps its name under its input folder
    paths, skipped = media.find_media(args.inputs, resolve_links=False)
    out = Path(args.out)
    busy = "another avssl embed is writing into this folder; wait for it to end"
    with hold_output_folder(out, busy, "an embed folder"):
        old = store.load_record(out)
        change = None if old is None else store.settings_change(old, settings)
        if change and old["files"] and not args.force:  # a folder of no rows holds nothing
            raise AvsslError(
                f"{out}: holds embeddings of other settings ({change}); give another --out, "
                "or --force to replace them"
            )
        fresh = old is None or change is not None
        if not paths and (fresh or not old["files"]):
            raise AvsslError(f"{args.inputs[0]}: no media file in the inputs; nothing written")
        if fresh:
            record = store.new_record(settings, _root(paths, args.inputs), state["path"])
        else:
            record = old  # one written before ``inputs`` were recorded keeps them unknown
        names = _names(paths, Path(record["root"]), skipped)
        if skipped and args.strict:
            raise MediaError(skipped[0]["path"], skipped[0]["reason"])
        if not args.quiet:  # links to nothing, missing files, files outside the root
            for item in skipped:
                print(f"skipped {one_line(item['path'])}: {item['reason']}", file=sys.stderr)
        replace = old if fresh else None
        counts = _embed_all(args, out, record, names, model, cfg, skipped, fresh, replace)
        counts |= gone_rows(out, record, set(names.values()), args.prune)
        if fresh and not record["files"]:  # nothing written: the folder is as it was
            first = f"; first: {skipped[0]['path']}: {skipped[0]['reason']}" if skipped else ""
            raise AvsslError(
                f"{out}: no usable media file in the inputs ({len(skipped)} skipped{first}); "
                "nothing written"
            )
    summary = {
        "out": str(out),
        "checkpoint": state["path"],
        "root": record["root"],
        "files": len(record["files"]),
        **counts,
        **skip_fields(skipped),
        "seconds": round(time.perf_counter() - t0, 3),
    }
    print(names_json(summary))
    return 0


def _embed_all(
    args, out: Path, record: dict, names: dict, model, cfg, skipped: list, fresh: bool, replace
) -> dict:
    """Embed the new and changed files of ``names`` into ``out``, updating ``record`` (saved
    every :data:`SAVE_EVERY_S` and at the end, also when stopped); the summary's counts.

    A ``fresh`` record is written, and the rows of the record ``replace`` (``--force``) deleted,
    only once the first file is embedded: a run that embeds nothing (every file unreadable,
    ``--strict``, a stop) leaves the folder as it was.
    """
    device = next(model.parameters()).device
    dims = embedding_dims(model, cfg.data)  # of the side a file lacks: computed once
    n = {"embedded": 0, "unchanged": 0, "dropped": 0, "replaced": 0}
    n |= {"audio_windows": 0, "visual_windows": 0}
    media_s, saved, started = 0.0, time.monotonic(), not fresh
    files = record["files"]
    try:
        for i, (path, rel) in enumerate(names.items()):
            npz = out / store.npz_name(rel)
            stamp, entry = media.file_stamp(path), files.get(rel)
            same = entry and entry.get("path") == str(path) and media.same_stamp(entry, stamp)
            if same and store.npz_intact(npz):  # a damaged or deleted .npz is written again
                n["unchanged"] += 1
                continue
            try:
                if store.name_too_long(out, rel):  # before this run changes the folder
                    raise OSError(errno.ENAMETOOLONG, "File name too long", str(npz))
                emb = media.embed_file(model, cfg, path, args.hop, device, args.unit, dims)
                if not started:  # the folder is this run's from now on
                    n["replaced"] = store.clear(out, replace) if replace else 0
                    store.save_record(out, record)
                    started = True
                store.write_npz(npz, emb)
            except (MediaError, OSError) as err:
                if isinstance(err, OSError) and err.errno != errno.ENAMETOOLONG:
                    raise  # a full disk, a folder it cannot write: every later file would fail
                reason = getattr(err, "reason", "its .npz name is too long for the file system")
                if args.strict:
                    raise MediaError(path, reason) from None
                skipped.append({"path": str(path), "reason": reason})
                if rel in files:  # its old rows no longer describe it (the .npz goes first)
                    npz.unlink(missing_ok=True)
                    del files[rel]
                    n["dropped"] += 1
                if not args.quiet:
                    print(f"skipped {one_line(str(path))}: {reason}", file=sys.stderr)
                continue
            windows = {"audio_windows": len(emb.audio_time), "visual_windows": len(emb.visual_time)}
            files[rel] = {"path": str(path), "kind": emb.kind, "duration": emb.duration}
            # its device: a file missing later whose folder is on another one is out of reach
            files[rel].update(**stamp, **windows, dev=os.stat(path).st_dev)
            n["embedded"] += 1
            n["audio_windows"] += windows["audio_windows"]
            n["visual_windows"] += windows["visual_windows"]
            media_s += emb.duration
            if not args.quiet:
                print(f"[{i + 1}/{len(names)}] {one_line(str(path))}", file=sys.stderr)
            if time.monotonic() - saved > SAVE_EVERY_S:
                store.save_record(out, record)
                saved = time.monotonic()
    finally:
        if started:
            store.save_record(out, record)
    return {**n, "media_seconds": round(media_s, 3)}
