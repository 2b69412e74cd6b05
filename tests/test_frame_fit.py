"""``data.frame_fit``: a non-square frame is squashed (the default, unchanged) or scaled by its
shorter side with its centre square kept (``crop``), through the real decoder, for the train
split only (val and test always squash: boxes are normalised to the whole frame).

Test pictures are 2:1 (or 1:2 as shown) with a red quarter, a green centre half and a blue
quarter along the long side: the centre square of such a picture is all green, a squashed one
shows red, green and blue.
"""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest
import torch
from bad_media import encode_h264
from PIL import Image

from avssl.config import load_config
from avssl.data.frame_fit import cover_size
from avssl.data.manifest import Row, write_manifest
from avssl.data.media import probe, read_frames
from avssl.data.source import load_split
from avssl.data.writer import write_video
from avssl.errors import ConfigError

SR, FPS = 16000, 10


def bands(h: int, w: int) -> np.ndarray:
    """uint8 ``[h, w, 3]``: red, green, blue over the quarters of the width (green: the middle
    two)."""
    quarter = np.minimum(np.arange(w) * 4 // w, 3)
    channel = np.array([0, 1, 1, 2])[quarter]
    img = np.zeros((h, w, 3), np.uint8)
    img[:, np.arange(w), channel] = 220
    return img


def colours(line: np.ndarray) -> str:
    """The dominant channel of each pixel of a ``[N, 3]`` line, as ``R``/``G``/``B``."""
    return "".join("RGB"[int(np.argmax(p))] for p in np.asarray(line, dtype=np.int32))


def quarters(line: np.ndarray) -> str:
    """:func:`colours` at the middle of each quarter of a line (a squashed picture: ``RGGB``);
    the pixels at the boundaries blend their neighbours."""
    c, n = colours(line), len(line)
    return "".join(c[(2 * k + 1) * n // 8] for k in range(4))


def wide_video(path, h: int = 48, w: int = 96, seconds: float = 1.5):
    """A lossless 2:1 video of :func:`bands` with a tone, at :data:`FPS`."""
    t = np.arange(round(seconds * SR)) / SR
    tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
    frames = np.stack([bands(h, w)] * round(seconds * FPS))
    return write_video(path, frames, FPS, tone, SR, crf=0)


@pytest.fixture
def pictures(tmp_path):
    """``{kind: path}`` of pictures whose shown centre square is green: stored 2:1, stored 2:1
    and shown turned a quarter (1:2), square pixels of 2:1 shape (anamorphic: stored square),
    and a still image."""
    wide = wide_video(tmp_path / "wide.mp4")
    turned = encode_h264(tmp_path / "turned.mp4", [bands(48, 96)] * 5, rotation=-90, crf=0)
    anamorphic = encode_h264(tmp_path / "sar.mp4", [bands(48, 48)] * 5, sar=Fraction(2), crf=0)
    Image.fromarray(bands(32, 64)).save(tmp_path / "still.png")
    return {"wide": wide, "turned": turned, "anamorphic": anamorphic,
            "still": tmp_path / "still.png"}  # fmt: skip


def _long_side(frame: np.ndarray, kind: str) -> np.ndarray:
    """The middle line along the picture's long side as shown (a column for the turned one)."""
    return frame[:, frame.shape[1] // 2] if kind == "turned" else frame[frame.shape[0] // 2]


@pytest.mark.parametrize("kind", ["wide", "turned", "anamorphic", "still"])
def test_crop_keeps_the_centre_square_and_squash_the_whole_frame(pictures, kind):
    path = pictures[kind]
    cropped = read_frames(path, 0.0, 0.2, FPS, 16, "crop").numpy()
    squashed = read_frames(path, 0.0, 0.2, FPS, 16, "squash").numpy()
    assert cropped.shape == squashed.shape == (2, 16, 16, 3)
    assert quarters(_long_side(squashed[0], kind)) == "RGGB", kind  # turned: top down
    assert set(colours(cropped[0].reshape(-1, 3))) == {"G"}, kind


def container_sar(src, dst, sar: Fraction):
    """``src`` (an MP4 of square pixels) copied into ``dst`` with ``sar`` in the container only
    (its ``pasp`` box; the h264 stream keeps none), as a copy with another aspect is."""
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        stream = inp.streams.video[0]
        copy = out.add_stream_from_template(stream)
        copy.codec_context.sample_aspect_ratio = sar
        for packet in inp.demux(stream):
            if packet.dts is not None:
                packet.stream = copy
                out.mux(packet)
    return dst


def test_a_sample_aspect_ratio_the_container_alone_declares_is_applied(tmp_path):
    """Players take the container's aspect over the codec's (FFmpeg's guess), and so do crop
    and the shown size: square pixels stored 1:1, shown 2:1, crop to the green centre."""
    square = encode_h264(tmp_path / "sq.mp4", [bands(48, 48)] * 5, crf=0)
    path = container_sar(square, tmp_path / "pasp.mp4", Fraction(2))
    with av.open(str(path)) as container:
        assert not container.streams.video[0].codec_context.sample_aspect_ratio  # container only
    cropped = read_frames(path, 0.0, 0.1, 25, 16, "crop")[0].numpy()
    assert set(colours(cropped.reshape(-1, 3))) == {"G"}
    assert quarters(read_frames(path, 0.0, 0.1, 25, 16, "squash")[0, 8].numpy()) == "RGGB"
    info = probe(path, shown=True)
    assert (info.width, info.height) == (96, 48)


def test_a_stream_changing_its_frame_size_is_cropped_frame_by_frame(tmp_path):
    """An MPEG-TS of a 2:1 second then a square one (two encodes joined, as a recording
    cut together is): each frame is scaled by its own shorter side, as squash scales each."""
    wide = encode_h264(tmp_path / "a.ts", [bands(48, 96)] * 25, fmt="mpegts", crf=0)
    square = encode_h264(tmp_path / "b.ts", [bands(48, 48)] * 25, fmt="mpegts", crf=0, first=25)
    path = tmp_path / "joined.ts"
    path.write_bytes(wide.read_bytes() + square.read_bytes())
    cropped = read_frames(path, 0.0, 2.0, 5, 16, "crop").numpy()
    squashed = read_frames(path, 0.0, 2.0, 5, 16, "squash").numpy()
    assert [quarters(f[8]) for f in squashed] == ["RGGB"] * 10
    assert [quarters(f[8]) for f in cropped] == ["GGGG"] * 5 + ["RGGB"] * 5


def test_the_centre_square_spans_the_middle_half_of_a_2_to_1_picture(tmp_path):
    """A grey ramp from 0 (left) to 255 (right): the centre square of the picture scaled by its
    shorter side runs from a quarter to three quarters of it, not a zoom of a smaller part."""
    ramp = np.round(np.arange(128) * 255 / 127).astype(np.uint8)
    img = np.repeat(np.broadcast_to(ramp[None, :, None], (64, 128, 1)), 3, axis=2)
    path = write_video(tmp_path / "ramp.mp4", np.stack([img] * 3), FPS, crf=0)
    cropped = read_frames(path, 0.0, 0.1, FPS, 32, "crop")[0, 16, :, 0].float()
    squashed = read_frames(path, 0.0, 0.1, FPS, 32, "squash")[0, 16, :, 0].float()
    # scaled to 32 x 64, output column j is scaled column 16 + j: source columns 2 (16 + j) and
    # the next, of grey (2 (16 + j) + 0.5) x 255 / 127
    grey = (2 * (16 + torch.arange(32)) + 0.5) * 255 / 127
    assert (cropped - grey).abs().max() < 6
    assert torch.all(cropped[1:] > cropped[:-1])
    assert squashed[0] < 12 and squashed[-1] > 243


def test_crop_of_a_square_picture_is_the_squashed_picture(tmp_path):
    square = write_video(tmp_path / "sq.mp4", np.stack([bands(48, 48)] * 5), FPS, crf=0)
    a, b = (read_frames(square, 0.0, 0.5, FPS, 24, fit) for fit in ("crop", "squash"))
    assert torch.equal(a, b)


def test_the_default_is_the_whole_frame_scaled_as_before(pictures):
    """Squash (the default) scales the whole decoded frame by the scaler, nothing else."""
    path = pictures["wide"]
    with av.open(str(path)) as container:
        first = next(container.decode(video=0))
        expected = first.reformat(width=20, height=12, format="rgb24").to_ndarray()
    got = read_frames(path, 0.0, 0.1, FPS, (12, 20))[0].numpy()
    assert np.array_equal(got, expected)
    default = read_frames(path, 0.0, 0.3, FPS, 16)
    assert torch.equal(default, read_frames(path, 0.0, 0.3, FPS, 16, "squash"))


def test_fit_arguments_are_checked(pictures):
    with pytest.raises(ValueError, match="needs an output size"):
        read_frames(pictures["wide"], 0.0, 0.1, FPS, None, "crop")
    with pytest.raises(ValueError, match="fit must be one of squash, crop"):
        read_frames(pictures["wide"], 0.0, 0.1, FPS, 16, "zoom")


def test_cover_size_keeps_the_shown_aspect_ratio():
    assert cover_size((96, 48), None, 0, (16, 16)) == (16, 32)
    assert cover_size((96, 48), None, 1, (16, 16)) == (16, 32)  # shown_wh is already upright
    assert cover_size((48, 48), Fraction(2), 0, (16, 16)) == (16, 32)
    assert cover_size((48, 48), Fraction(2), 1, (16, 16)) == (32, 16)  # stored width is height
    assert cover_size((100, 100), None, 0, (12, 20)) == (20, 20)


@pytest.mark.parametrize("value", ["zoom", "Crop", "centre"])
def test_an_unknown_fit_is_one_line_naming_the_valid_ones(value):
    with pytest.raises(ConfigError) as err:
        load_config(None, [f"data.frame_fit={value}"])
    assert str(err.value) == f"data.frame_fit: must be one of squash, crop, got {value!r}"


def test_the_fit_in_a_config_file(tmp_path):
    assert load_config(None).data.frame_fit == "squash"
    cfg = tmp_path / "c.yaml"
    cfg.write_text("data:\n  frame_fit: crop\n")
    assert load_config(cfg).data.frame_fit == "crop"
    cfg.write_text("data:\n  frame_fit: pad\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: data\.frame_fit: must be one of squash, crop"):
        load_config(cfg)


def clip_manifest(folder) -> str:
    """Two 2:1 clips in each split of a manifest in ``folder``; returns its path."""
    wide_video(folder / "a.mp4")
    wide_video(folder / "b.mp4", h=40, w=80)
    rows = [Row(id=f"{s}-{v}", video=f"{v}.mp4", split=s, labels=[v])
            for s in ("train", "val", "test") for v in ("a", "b")]  # fmt: skip
    write_manifest(folder / "manifest.jsonl", rows)
    return str(folder / "manifest.jsonl")


def fit_data(manifest: str, fit: str, *extra: str):
    """Data settings of tiny 16-px frames (decoded at 20 px to train) with ``fit``."""
    sets = [f"data.root={manifest}", f"data.fps={FPS}", "data.frame_size=16",
            "data.load_size=20", "data.window=0.5", "data.min_shift=0.5",
            f"data.frame_fit={fit}", *extra]  # fmt: skip
    return load_config(None, sets).data


def frames_of(ds) -> torch.Tensor:
    """``[n, 16, 16, 3]`` uint8: every item's frame, channels last."""
    return torch.stack([ds[i]["frames"].permute(1, 2, 0) for i in range(len(ds))])


def test_the_dataset_crops_the_train_split_only(tmp_path):
    data = fit_data(clip_manifest(tmp_path), "crop", "data.augment=false")
    for split, train in (("train", True), ("train", False)):
        frames = frames_of(load_split(data, split, train, windows_per_clip=2, progress=False))
        assert set(colours(frames.reshape(-1, 3))) == {"G"}, (split, train)
    for split in ("val", "test"):
        frames = frames_of(load_split(data, split, False, progress=False))
        assert {quarters(f[8]) for f in frames.numpy()} == {"RGGB"}, split
    squashed = frames_of(load_split(fit_data(data.root, "squash", "data.augment=false"),
                                    "train", True, progress=False))  # fmt: skip
    assert {quarters(f[8]) for f in squashed.numpy()} == {"RGGB"}


def test_augmentation_crops_inside_the_centre_square(tmp_path):
    data = fit_data(clip_manifest(tmp_path), "crop")
    ds = load_split(data, "train", True, windows_per_clip=8, progress=False)
    frames = frames_of(ds)
    assert frames.shape == (16, 16, 16, 3)
    assert set(colours(frames.reshape(-1, 3))) == {"G"}  # no red or blue from the sides
    squashed = frames_of(load_split(fit_data(data.root, "squash"), "train", True,
                                    windows_per_clip=8, progress=False))  # fmt: skip
    assert {"R", "B"} <= set(colours(squashed.reshape(-1, 3)))


@pytest.mark.parametrize("split,train", [("train", True), ("val", False)])
def test_decoding_on_demand_gives_the_preloaded_frames(tmp_path, split, train):
    manifest = clip_manifest(tmp_path)
    sets = [
        load_split(fit_data(manifest, "crop", f"data.preload={p}"), split, train,
                   windows_per_clip=3, seed=4, progress=False)
        for p in ("true", "false")
    ]  # fmt: skip
    assert sets[0].store.preload and not sets[1].store.preload
    for i in range(len(sets[0])):
        a, b = sets[0][i], sets[1][i]
        assert torch.equal(a["frames"], b["frames"]), (split, i)
