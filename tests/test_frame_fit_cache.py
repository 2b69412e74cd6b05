"""``data.frame_fit`` and the shard cache: a cache records the train split's fit (``train_fit``,
only when it is ``crop``: a squashed cache's settings are those of a cache built before the key
existed), serves the frames decoding gives, streams them, and is refused to a run asking for the
other fit, as a cache of another frame size is."""

from __future__ import annotations

import json

import pytest
import torch
from test_frame_fit import FPS, clip_manifest, colours, fit_data, frames_of

from avssl.data import shards_cli
from avssl.data.shards import read_index
from avssl.data.source import load_split
from avssl.data.stream_pairs import StreamPairs
from avssl.errors import AvsslError

SETS = [f"data.fps={FPS}", "data.frame_size=16", "data.load_size=20", "data.window=0.5",
        "data.min_shift=0.5"]  # fmt: skip


def build(out, manifest: str, *extra: str) -> None:
    """``avssl cache`` of ``manifest`` into ``out`` with :data:`SETS` and ``extra`` settings."""
    sets = [a for s in (*SETS, *extra) for a in ("--set", s)]
    assert shards_cli.main(["--out", str(out), "--data", manifest, *sets, "--no-progress"]) == 0


@pytest.fixture(scope="module")
def caches(tmp_path_factory):
    """``(manifest, {fit: cache folder})``: the 2:1 clips cached squashed and cropped."""
    root = tmp_path_factory.mktemp("fit")
    manifest = clip_manifest(root)
    out = {fit: root / f"cache-{fit}" for fit in ("squash", "crop")}
    build(out["squash"], manifest)
    build(out["crop"], manifest, "data.frame_fit=crop")
    return manifest, out


def test_the_index_records_a_crop_and_a_squash_as_before(caches):
    _, out = caches
    squash, crop = (read_index(out[f])["settings"] for f in ("squash", "crop"))
    before = {"format": 1, "fps": 10.0, "sample_rate": 16000, "train_size": 20, "eval_size": 16}
    assert squash == before
    assert crop == {**before, "train_fit": "crop"}


@pytest.mark.parametrize("fit", ["squash", "crop"])
@pytest.mark.parametrize("split,train", [("train", True), ("train", False), ("val", False)])
def test_cached_frames_are_the_decoded_frames(caches, fit, split, train):
    manifest, out = caches
    decoded = load_split(fit_data(manifest, fit), split, train, windows_per_clip=3, seed=2,
                         progress=False)  # fmt: skip
    cached = load_split(fit_data(manifest, fit, f"data.cache={out[fit]}"), split, train,
                        windows_per_clip=3, seed=2, progress=False)  # fmt: skip
    assert len(cached) == len(decoded) == 6
    # the train split read for evaluation comes from the cache at its training size, resized:
    # the same picture, not the same pixels (README, Scaling up)
    for i in range(len(cached) if train or split != "train" else 0):
        assert torch.equal(cached[i]["frames"], decoded[i]["frames"]), (fit, split, i)
    for ds in (cached, decoded):
        pixels = set(colours(frames_of(ds).reshape(-1, 3)))  # augmented when train
        assert pixels == ({"G"} if fit == "crop" and split == "train" else {"R", "G", "B"})


def test_a_streamed_crop_cache_gives_centre_squares(caches):
    manifest, out = caches
    data = fit_data(manifest, "crop", f"data.cache={out['crop']}")
    items = list(StreamPairs(data, manifest))
    assert len(items) == 2
    assert set(colours(torch.stack([it["frames"] for it in items]).permute(0, 2, 3, 1)
                       .reshape(-1, 3))) == {"G"}  # fmt: skip
    squashed = fit_data(manifest, "squash", f"data.cache={out['squash']}")
    frames = torch.stack([it["frames"] for it in StreamPairs(squashed, manifest)])
    assert {"R", "B"} <= set(colours(frames.permute(0, 2, 3, 1).reshape(-1, 3)))


@pytest.mark.parametrize("have,want", [("squash", "crop"), ("crop", "squash")])
def test_a_cache_of_the_other_fit_is_refused(caches, have, want):
    manifest, out = caches
    data = fit_data(manifest, want, f"data.cache={out[have]}")
    for read in (lambda: load_split(data, "train", True, progress=False),
                 lambda: load_split(data, "train", False, progress=False),
                 lambda: StreamPairs(data, manifest)):  # fmt: skip
        with pytest.raises(AvsslError) as err:
            read()
        message = str(err.value)
        assert f"frame_fit={have} for split 'train'" in message, message
        assert "needs fps=10, sample_rate=16000, size=" in message, message
        assert message.endswith(f"frame_fit={want} (rebuild it with avssl cache)"), message
        assert "\n" not in message
    # val and test are squashed whatever the fit: either cache serves them
    assert len(load_split(data, "val", False, progress=False)) == 2


def test_resuming_a_cache_with_the_other_fit_is_refused(caches, tmp_path):
    manifest, out = caches
    for have, want in (("squash", "crop"), ("crop", "squash")):
        with pytest.raises(AvsslError) as err:
            build(out[have], manifest, f"data.frame_fit={want}")
        assert f"other decode settings (data.frame_fit {have!r}, now {want!r})" in str(err.value)
    # a record naming squash explicitly is the squash a cache without one means
    copy = tmp_path / "copy"
    build(copy, manifest)
    index = json.loads((copy / "index.json").read_text())
    index["settings"]["train_fit"] = "squash"
    (copy / "index.json").write_text(json.dumps(index))
    build(copy, manifest)
    crop = fit_data(manifest, "crop", f"data.cache={copy}")
    with pytest.raises(AvsslError, match="frame_fit=squash for split 'train'"):
        load_split(crop, "train", True, progress=False)
