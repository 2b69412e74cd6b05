"""Training items per second decoded from media (``data.preload: false``), by the audio entries
each method's loss reads.

A training item is one frame and up to three audio windows (the positive, an easy negative from
another clip, a time-shifted hard negative). Each method declares the entries it reads
(``AVModel.audio_keys``) and training decodes only those; this measures what that saves when
items are decoded on the fly, on the real videos of ``../shared/data/videos`` (or
``--manifest``), every row used as a training clip.

usage: python benchmarks/pair_items.py [--manifest PATH] [--items N]

The last stdout line is one JSON object, e.g.
``{"items_per_s": {"audio+audio_easy+audio_hard+audio_neg": 5.03, "audio+audio_hard": 6.28, ...},
"methods": {"contrastive": "audio+audio_hard", ...}, "n_items": 60, "clips": 6}``.
"""

from __future__ import annotations

import sys

if __name__ == "__main__":  # the imports below, then main(), under the one-line error guard
    from avssl.cli import run_script

    sys.exit(run_script(__file__))

import dataclasses
import json
import tempfile
import time
from pathlib import Path

from avssl.cli import ArgumentParser, int_at_least
from avssl.config import DataConfig, LossConfig, ModelConfig
from avssl.data.dataset import AVPairDataset, ClipStore
from avssl.data.manifest import Row, read_manifest, write_manifest
from avssl.data.pairs import AUDIO_KEYS
from avssl.data.source import class_names
from avssl.errors import AvsslError
from avssl.models import METHODS, build_model
from avssl.tools.bench_data import folder_videos

REPO = Path(__file__).resolve().parents[1]
SHARED_VIDEOS = REPO.parent / "shared" / "data" / "videos"


def video_manifest(folder: Path, out: Path) -> Path:
    """A manifest of the videos with audio of ``folder``, every one a training clip."""
    rows = [
        Row(id=path.name, video=str(path.resolve()), split="train")  # a.mp4 and a.webm: 2 ids
        for path, _ in folder_videos(folder, 3.0)  # files avssl cannot read are skipped
    ]
    write_manifest(out, rows)
    return out


def declared_keys() -> dict[str, tuple[str, ...]]:
    """Each method's (and avolnet's batch-pairs variant's) declared audio entries."""
    data, out = DataConfig(), {}
    for method in METHODS:
        out[method] = build_model(ModelConfig(method=method), data, LossConfig()).audio_keys()
    batch = LossConfig(pair_negatives="batch")
    out["avolnet (batch pairs)"] = build_model(
        ModelConfig(method="avolnet"), data, batch
    ).audio_keys()
    return out


def items_per_second(dataset: AVPairDataset, keys: tuple[str, ...], n: int) -> float:
    """Read items 1..n (item 0 warms up codecs and the page cache) reading only ``keys``."""
    dataset.set_audio_keys(keys)
    dataset[0]
    t0 = time.perf_counter()
    for i in range(1, n + 1):
        dataset[i]
    return n / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark the module docstring describes, with the command line ``argv``
    (default ``sys.argv[1:]``); the last stdout line is its JSON result. Returns 0."""
    parser = ArgumentParser(prog="benchmarks/pair_items.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifest", type=Path, help="manifest to read (default: shared videos)")
    parser.add_argument("--videos", type=Path, default=SHARED_VIDEOS, help="folder of real videos")
    parser.add_argument(
        "--items", type=int_at_least(1, 1_000_000), default=60, help="items per measurement"
    )
    parser.add_argument(
        "--repeats", type=int_at_least(1, 1000), default=3, help="passes; the best is reported"
    )
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        manifest = args.manifest
        if manifest is None:
            if not args.videos.exists():
                raise AvsslError(f"{args.videos}: absent; give --manifest")
            manifest = video_manifest(args.videos, Path(tmp) / "manifest.jsonl")
        rows = [dataclasses.replace(r, split="train") for r in read_manifest(manifest)]
        data = DataConfig(preload=False)
        store = ClipStore(rows, manifest, data, data.load_size, preload=False)
        if len(store) < 2:  # an easy negative comes from another clip
            raise AvsslError(f"{manifest}: {len(store)} usable clips (need 2)")
        dataset = AVPairDataset(store, data, class_names(rows), train=True, windows_per_clip=64)
        methods = {m: "+".join(k) for m, k in declared_keys().items()}
        rates = {}
        for keys in [AUDIO_KEYS, *sorted(set(declared_keys().values()), key=len, reverse=True)]:
            name = "+".join(keys)
            if name not in rates:
                best = max(items_per_second(dataset, keys, args.items) for _ in range(args.repeats))
                rates[name] = round(best, 2)
                print(f"{name}: {best:.1f} items/s")
    print(json.dumps({"items_per_s": rates, "methods": methods, "n_items": args.items,
                      "clips": len(store)}))  # fmt: skip
    return 0
