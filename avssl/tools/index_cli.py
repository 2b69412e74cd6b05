"""``avssl index``: build or update a cross-modal search index (see :mod:`avssl.tools.index`).

usage: avssl index --checkpoint CKPT --inputs PATH... --out INDEX [--hop S] [--strict]
                   [--rebuild]

The index mirrors its inputs: re-running on an existing index (``--inputs`` and ``--hop`` may
then be omitted to reuse the recorded ones) embeds new and changed files (size or mtime differ),
keeps unchanged ones and drops files no longer found; ``--rebuild`` embeds every file again
(same defaults), and only ever replaces an avssl index. Unreadable files, and links in an input
folder that lead nowhere, are skipped and listed in the JSON summary printed as the last stdout
line; ``--strict`` makes the first one an error. An input that does not exist, or such a link
through which the index holds files (a linked folder on an unmounted disk), changes nothing.
For a model without a shared audio-visual space (l3) every run also fits the CCA of the index's
window pairs that its cross-modal queries search (:mod:`avssl.tools.index_cca`; ``cca`` in the
summary).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

from avssl.cli import ArgumentParser, names_json, one_line, positive_float
from avssl.cli_checkpoint import load_command_model
from avssl.config import to_dict
from avssl.errors import AvsslError, MediaError, skip_fields
from avssl.folder_lock import hold_output_folder
from avssl.tools.index import (
    FORMAT,
    Index,
    add_files,
    empty_tensors,
    keep_files,
    load_index,
    load_meta,
    own_tensor_file,
    save_index,
    weights_hash,
)
from avssl.tools.index_media import (
    MAX_HOP,
    MIN_HOP,
    add_inputs_argument,
    embed_file,
    file_stamp,
    find_media,
    lost_under,
    same_stamp,
)


def _parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="avssl index", description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True, help="checkpoint file or run directory")
    add_inputs_argument(p, required=False)  # an update may reuse the recorded ones
    p.add_argument("--out", required=True, help="index directory (created or updated)")
    p.add_argument(
        "--hop",
        type=positive_float,
        default=None,
        help=f"seconds between windows, {MIN_HOP:g} to {MAX_HOP:g} (default: the index's, else 1)",
    )
    p.add_argument("--strict", action="store_true", help="stop at the first unreadable file")
    p.add_argument("--rebuild", action="store_true", help="discard an existing index first")
    p.add_argument("--device", default="cpu", help="cpu | auto | cuda[:N]")
    p.add_argument("--quiet", action="store_true", help="no per-file lines on stderr")
    return p


def _open_or_create(out: Path, args, cfg, ckpt: dict, dims: tuple[int, int]) -> tuple[Index, bool]:
    """The index to update and whether all its files must be embedded again (another hop)."""
    if out.exists() and not out.is_dir():
        raise AvsslError(f"{out}: exists and is not an index directory")
    if (out / "meta.json").is_file() and not args.rebuild:
        index = load_index(out, mmap=False)
        index.check_checkpoint(ckpt["sha256"], ckpt["path"], cfg)
        rehop = args.hop is not None and args.hop != index.meta["hop"]
        if rehop:
            index.meta["hop"] = args.hop
        return index, rehop
    if out.is_dir() and any(out.iterdir()) and not (out / "meta.json").is_file():
        raise AvsslError(f"{out}: a non-empty folder that is not an avssl index")
    meta = {"format": FORMAT, "checkpoint": ckpt, "config": to_dict(cfg), "hop": 1.0}
    if (out / "meta.json").is_file():  # --rebuild
        meta.update(_rebuild_defaults(out))
    if args.hop is not None:
        meta["hop"] = args.hop
    tensors = empty_tensors(dims[0])
    tensors["visual"] = torch.zeros(0, dims[1], dtype=tensors["audio"].dtype)
    return Index(out, meta, [], tensors), False


def _rebuild_defaults(out: Path) -> dict:
    """What ``--rebuild`` keeps of the index in ``out``: its hop and inputs (defaults for the
    flags) and its tensor file (replaced by the new one if :func:`save_index` wrote it).

    Raises:
        AvsslError: ``out/meta.json`` is not an avssl index's (another tool's folder).
    """
    try:
        old = load_meta(out)
    except AvsslError as err:
        raise AvsslError(
            f"{err}; --rebuild replaces only an avssl index (nothing changed): remove the "
            "folder yourself, or give another --out, to index anew"
        ) from None
    kept = {k: old[k] for k in ("hop", "inputs") if k in old}
    if own_tensor_file(old["tensors"]):
        kept["tensors"] = old["tensors"]
    return kept


def _check_recorded(out: Path, meta: dict, inputs_used: bool) -> None:
    """Refuse the hop, or the inputs list if ``inputs_used``, an edited ``meta.json`` spoilt."""
    hop, inputs = meta.get("hop"), meta.get("inputs", []) if inputs_used else []
    if isinstance(hop, bool) or not isinstance(hop, (int, float)) or not 0 < hop <= MAX_HOP:
        raise AvsslError(f"{out / 'meta.json'}: damaged index metadata (hop {hop!r})")
    if not isinstance(inputs, list) or not all(isinstance(x, str) for x in inputs):
        raise AvsslError(f"{out / 'meta.json'}: damaged index metadata (inputs {inputs!r})")


def _check_links(out: Path, skipped: list[dict], files: list[dict], rebuild: bool) -> None:
    """Refuse an update that would drop the files indexed through a linked folder whose target
    is missing (an unmounted disk), as a missing input is refused: they were not deleted.

    Args:
        out: the index directory.
        skipped: what :func:`find_media` found missing.
        files: the index's file entries (under ``rebuild``, those of the index it replaces).
        rebuild: ``--rebuild`` was given.
    """
    if rebuild and (out / "meta.json").is_file():
        files = load_meta(out)["files"]
    indexed = [f["path"] for f in files if isinstance(f, dict) and isinstance(f.get("path"), str)]
    for item in skipped:
        if n := lost_under(Path(item["path"]), indexed):
            raise AvsslError(
                f"{item['path']}: a link to {os.readlink(item['path'])}, which is missing (an "
                f"unmounted disk?), through which {out} indexed {n} file{'s' * (n != 1)}; "
                "nothing changed (remove the link to drop them)"
            )


def _fit_cca(index: Index, method: str, dims: tuple[int, int], quiet: bool) -> dict | None:
    """For a model without a shared space (l3), fit the CCA of the index's window pairs that
    its cross-modal queries go through (:mod:`avssl.tools.index_cca`); its record, else None."""
    from avssl.models import method_class

    if method_class(method).shared_space:
        return None
    from avssl.tools.index_cca import fit_index_cca

    cca = fit_index_cca(index)
    if not quiet and cca["pairs"] < sum(dims):
        print(
            f"note: the CCA of {method}'s cross-modal search is fitted on the index's "
            f"{cca['pairs']} audio-visual window pairs, fewer than the {sum(dims)} dimensions "
            "of its two sides: cross-modal results are rough until it holds more videos",
            file=sys.stderr,
        )
    return cca


def main(argv: list[str] | None = None) -> int:
    """``avssl index``: build or update the index; the last stdout line is a JSON summary."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.hop is not None and args.hop < MIN_HOP:  # a window every sample: memory, not search
        raise AvsslError(f"--hop: must be at least {MIN_HOP} s, got {args.hop:g}")
    if args.hop is not None and args.hop > MAX_HOP:
        raise AvsslError(f"--hop: must be at most {MAX_HOP:g} s, got {args.hop:g}")
    from avssl.models import embedding_dims
    from avssl.train.runtime import resolve_device

    t0 = time.perf_counter()
    model, cfg, state = load_command_model(args.checkpoint, resolve_device(args.device, "--device"))
    ckpt = {"path": state["path"], "sha256": weights_hash(model)}
    out = Path(args.out)
    busy = "another avssl index is updating this index; wait for it to end"
    # two updates at once would each keep only their own files
    with hold_output_folder(out, busy, "an index directory"):
        return _update(args, out, model, cfg, ckpt, embedding_dims(model, cfg.data), t0)


def _update(args, out: Path, model, cfg, ckpt: dict, dims: tuple[int, int], t0: float) -> int:
    """Build or update the index in ``out`` holding its lock; print the summary line."""
    index, rehop = _open_or_create(out, args, cfg, ckpt, dims)
    _check_recorded(out, index.meta, inputs_used=not args.inputs)
    inputs = args.inputs or index.meta.get("inputs")
    if not inputs:
        raise AvsslError(f"{out}: give --inputs (the index records none yet)")
    for x in inputs:
        # a mistyped path or an unmounted disk must not read as "every file was deleted"
        if not Path(x).exists():
            raise AvsslError(f"{x}: no such file or folder (an input of {out}; nothing changed)")
    index.meta["inputs"] = [str(Path(x).resolve()) for x in inputs]
    paths, skipped = find_media(inputs)
    _check_links(out, skipped, index.files, args.rebuild)
    if skipped and args.strict:
        raise MediaError(skipped[0]["path"], skipped[0]["reason"])
    if not args.quiet:  # links to nothing, a manifest's missing files: as files read badly
        for item in skipped:
            print(f"skipped {one_line(item['path'])}: {item['reason']}", file=sys.stderr)

    stamps = {str(p): file_stamp(p) for p in paths}
    keep, unchanged, updated = [], set(), set()
    for entry in index.files:
        stamp = stamps.get(entry["path"])
        same = not rehop and stamp is not None and same_stamp(entry, stamp)
        keep.append(same)
        (unchanged if same else updated if stamp is not None else set()).add(entry["path"])
    removed = len(index.files) - len(unchanged) - len(updated)
    keep_files(index, keep)

    todo = [p for p in paths if str(p) not in unchanged]
    items, media_s = [], 0.0
    model.eval()
    for i, p in enumerate(todo):
        try:
            device = next(model.parameters()).device
            emb = embed_file(model, cfg, p, index.meta["hop"], device, dims=dims)
        except MediaError as err:
            if args.strict:
                raise
            skipped.append({"path": str(p), "reason": err.reason})
            if str(p) in updated:  # its earlier windows are gone from the index
                updated.discard(str(p))
                removed += 1
            if not args.quiet:
                print(f"skipped {one_line(str(err))}", file=sys.stderr)
            continue
        media_s += emb.duration
        entry = {"path": str(p), "kind": emb.kind, "duration": emb.duration, **stamps[str(p)]}
        items.append((entry, emb))
        if not args.quiet:
            print(f"[{i + 1}/{len(todo)}] {one_line(str(p))}", file=sys.stderr)
    if not index.files and not items:  # an earlier index stays as it was
        first = f"; first: {skipped[0]['path']}: {skipped[0]['reason']}" if skipped else ""
        # an input folder left empty by an unmounted disk must not empty the index
        gone = (
            f"; every file it holds ({removed}) is gone, and the index is kept" if removed else ""
        )
        raise AvsslError(
            f"{out}: no usable media file in the inputs ({len(skipped)} skipped{first}){gone}; "
            "nothing written" + (" (delete its folder to start anew)" if removed else "")
        )
    add_files(index, items)
    cca = _fit_cca(index, cfg.model.method, dims, args.quiet)
    save_index(index)

    summary = {
        "index": str(out),
        "checkpoint": ckpt["path"],
        "files": len(index.files),
        "added": len(items) - len(updated),
        "updated": len(updated),
        "unchanged": len(unchanged),
        "removed": removed,
        **skip_fields(skipped),
        "audio_windows": index.count("audio"),
        "visual_windows": index.count("visual"),
        "media_seconds": round(media_s, 3),
        **({"cca": cca} if cca is not None else {}),
        "seconds": round(time.perf_counter() - t0, 3),
    }
    print(names_json(summary))
    return 0
