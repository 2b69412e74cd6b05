"""Drawing and sound synthesis for the synthetic AV world (:mod:`avssl.data.synthetic`).

Everything is vectorised numpy: shapes are signed-distance functions evaluated on pixel grids
(coverage ``clip(0.5 - distance, 0, 1)`` gives one pixel of anti-aliasing); the sounds are made
by :mod:`avssl.data.synth_audio`.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

import numpy as np

from avssl.data.synth_audio import background_noise, envelope, onset_times, tone

SHAPES = (
    "circle", "square", "triangle", "diamond", "cross",
    "ring", "hexagon", "star", "xcross", "hourglass",
)  # fmt: skip
TIMBRES = ("sine", "square", "saw", "noise", "fm")
S3 = np.sqrt(3.0) / 2


@dataclass(frozen=True)
class ClassSpec:
    """Look and sound of one object class (a pure function of its index).

    ``ioi`` is the range in seconds of the inter-onset intervals between its notes, before each
    clip scales it by its own tempo factor in [0.9, 1.1] (:func:`render_clip`).
    """

    name: str
    shape: str
    rgb: tuple[float, float, float]
    pitch: float
    timbre: str
    ioi: tuple[float, float]


def class_specs(n: int) -> list[ClassSpec]:
    """``n`` classes: distinct shapes, hues and pitches (200-1600 Hz); the timbre cycles through
    :data:`TIMBRES` (five) and the note-onset interval range through three overlapping ones, so
    those two are shared between classes.

    They are the first ``n`` of :data:`SHAPES`, sorted by name: the label index is then the
    same as that of :func:`avssl.data.source.class_names` (the sorted label names).
    """
    specs = []
    for i, name in enumerate(sorted(SHAPES[:n])):
        rgb = colorsys.hsv_to_rgb(i / n, 0.9, 1.0)
        pitch = 200.0 * 8.0 ** (i / max(n - 1, 1))
        lo = 0.22 + 0.03 * (i % 3)
        specs.append(
            ClassSpec(
                name=name,
                shape=name,
                rgb=tuple(round(c, 4) for c in rgb),
                pitch=round(pitch, 2),
                timbre=TIMBRES[i % len(TIMBRES)],
                ioi=(round(lo, 2), round(lo + 0.35, 2)),
            )
        )
    return specs


def _box(x, y, hx, hy):
    """Signed distance to an axis-aligned box of half sizes ``hx``, ``hy``."""
    dx, dy = np.abs(x) - hx, np.abs(y) - hy
    outside = np.hypot(np.maximum(dx, 0), np.maximum(dy, 0))
    return outside + np.minimum(np.maximum(dx, dy), 0)


def shape_sdf(shape: str, x: np.ndarray, y: np.ndarray, r) -> np.ndarray:
    """Signed distance (pixels, negative inside) to ``shape`` filling the box ``[-r, r]^2``.

    Args:
        shape: one of :data:`SHAPES`.
        x: horizontal pixel offsets from the shape's centre (any shape broadcastable with
            ``y`` and ``r``, e.g. ``[1, 1, w]``).
        y: vertical pixel offsets from the centre, y down (e.g. ``[1, h, 1]``).
        r: half size in pixels (scalar or broadcastable, e.g. ``[T, 1, 1]``).

    Returns:
        The distances, in the broadcast shape of ``x``, ``y`` and ``r``.
    """
    ax, ay = np.abs(x), np.abs(y)
    if shape == "circle":
        return np.hypot(x, y) - r
    if shape == "square":
        return _box(x, y, r, r)
    if shape == "triangle":  # apex up, base at the bottom; max of half-plane distances
        k = 1 / np.sqrt(5.0)  # edges from (0, -r) to (+-r, r) have slope 2
        return np.maximum(y - r, (2 * ax - y - r) * k)
    if shape == "diamond":
        return (ax + ay - r) / np.sqrt(2.0)
    if shape == "cross":
        return np.minimum(_box(x, y, r, 0.3 * r), _box(x, y, 0.3 * r, r))
    if shape == "ring":
        return np.abs(np.hypot(x, y) - 0.7 * r) - 0.3 * r
    if shape == "hexagon":  # flat sides left and right, vertices up and down
        return np.maximum(ax - S3 * r, ax * 0.5 + ay * S3 - S3 * r)
    if shape == "star":  # five points, radial distance; scaled and lowered to fill the box
        big = r / np.sin(0.4 * np.pi)
        y = y - big * (1 - np.cos(0.2 * np.pi)) / 2
        theta = np.arctan2(x, -y)
        tri = 1 - np.abs(((theta / (2 * np.pi / 5)) % 1.0) * 2 - 1)  # 0 at a point, 1 between
        return np.hypot(x, y) - big * (1 - 0.55 * tri)
    if shape == "xcross":
        u, v = (x + y) / np.sqrt(2.0), (x - y) / np.sqrt(2.0)
        w = 0.22 * r
        return np.minimum(_box(u, v, r * np.sqrt(2.0) - w, w), _box(u, v, w, r * np.sqrt(2.0) - w))
    if shape == "hourglass":
        return np.maximum(_box(x, y, r, r), (ax - ay) / np.sqrt(2.0))
    raise ValueError(f"unknown shape {shape!r}")


def coverage(sdf: np.ndarray) -> np.ndarray:
    """Anti-aliased pixel coverage in [0, 1] of a signed-distance field (pixels)."""
    return np.clip(0.5 - sdf, 0.0, 1.0)


def paint(canvas: np.ndarray, alpha: np.ndarray, rgb: np.ndarray, box: tuple[int, int]) -> None:
    """Alpha-composite a colour into ``canvas`` in place.

    Args:
        canvas: float ``[T, H, W, 3]`` frames.
        alpha: ``[T or 1, h, w]`` coverage of the patch whose top-left pixel is ``box``.
        rgb: ``[T or 1, 3]`` colour per frame.
        box: ``(top, left)`` of the patch.
    """
    top, left = box
    h, w = alpha.shape[1:]
    region = canvas[:, top : top + h, left : left + w]
    a = alpha[..., None]
    region *= 1 - a
    region += a * rgb[:, None, None, :]


TAU = 0.15  # envelope decay (s): the pulse's brightness and size encode time since the onset
SCALE = (0.75, 0.35)  # sounding size = base * (SCALE[0] + SCALE[1] * env); 1.1 at an onset
BRIGHT = (0.35, 0.65)  # sounding brightness = BRIGHT[0] + BRIGHT[1] * env
OUTLINE = 0.6  # brightness of the sounding object's fixed outline at its maximum size
MAX_SCALE = SCALE[0] + SCALE[1]


@dataclass
class Clip:
    """One rendered clip.

    Attributes:
        frames: uint8 ``[T, S, S, 3]``; frame ``i`` shows time ``i / fps``.
        audio: float32 ``[N]`` mono; sample ``n`` is time ``n / sample_rate``.
        sources: ``[[x0, y0, x1, y1]]`` normalised box of the sounding object at maximum size.
        distractors: normalised boxes of the silent objects.
        onsets: note onset times in seconds.
    """

    frames: np.ndarray
    audio: np.ndarray
    sources: list[list[float]]
    distractors: list[list[float]]
    onsets: np.ndarray


def _place(rng, size: int, halves: list[float], gap: float = 2.0) -> list[tuple[float, float]]:
    """Random non-overlapping centres for square footprints of the given half sizes.

    The first always fits (nothing else placed yet); later ones that find no room are dropped.
    """
    centres: list[tuple[float, float]] = []
    for h in halves:
        for _ in range(200):
            c = rng.uniform(h + 1, size - h - 1, size=2)
            if all(
                max(abs(c[0] - o[0]), abs(c[1] - o[1])) >= h + halves[j] + gap
                for j, o in enumerate(centres)
            ):
                centres.append((float(c[0]), float(c[1])))
                break
        else:
            break
    return centres


def _patch(centre, r: float, thick: float, size: int):
    """Pixel window ``(top, left, bottom, right)`` around an object and its offset grids."""
    ext = r * MAX_SCALE + thick / 2
    top = max(int(np.floor(centre[1] - ext)) - 1, 0)
    left = max(int(np.floor(centre[0] - ext)) - 1, 0)
    bottom = min(int(np.ceil(centre[1] + ext)) + 1, size)
    right = min(int(np.ceil(centre[0] + ext)) + 1, size)
    y = np.arange(top, bottom, dtype=np.float32)[None, :, None] + 0.5 - centre[1]
    x = np.arange(left, right, dtype=np.float32)[None, None, :] + 0.5 - centre[0]
    return (top, left, bottom, right), x, y


def _norm_box(centre, h: float, size: int) -> list[float]:
    """Normalised ``[x0, y0, x1, y1]`` of an object of half-size ``h`` px at ``centre``."""
    box = [centre[0] - h, centre[1] - h, centre[0] + h, centre[1] + h]
    return [round(float(np.clip(v / size, 0.0, 1.0)), 5) for v in box]


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return (np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8)


def render_clip(cfg, classes: list[ClassSpec], label: int, rng: np.random.Generator) -> Clip:
    """Render one clip: a pulsing sounding object of class ``label`` plus silent distractors.

    Args:
        cfg: a :class:`avssl.config.SynthConfig` (duration, size, fps, sample_rate, ...).
        classes: all class specs.
        label: index of the sounding object's class.
        rng: the clip's generator (everything random is drawn from it).

    Returns:
        The :class:`Clip`: frames uint8 ``[T, S, S, 3]`` with ``T = round(duration * fps)`` and
        ``S = cfg.size``, audio float32 ``[N]`` with ``N = round(duration * sample_rate)`` (peak
        0.5), one source box and the boxes of the distractors that could be placed.
    """
    size, n_frames = cfg.size, int(round(cfg.duration * cfg.fps))
    spec = classes[label]
    jitter = rng.uniform(0.9, 1.1)
    onsets = onset_times(rng, cfg.duration, (spec.ioi[0] * jitter, spec.ioi[1] * jitter))

    others = [i for i in range(len(classes)) if i != label]
    n_dis = int(rng.integers(0, min(cfg.max_distractors, len(others)) + 1))
    members = [label] + [int(i) for i in rng.choice(others, size=n_dis, replace=False)]
    radii = [rng.uniform(0.11, 0.16) * size for _ in members]  # diameter 22-32% of the frame
    thick = max(1.0, size / 64)
    centres = _place(rng, size, [r * MAX_SCALE + thick for r in radii])

    # Static layer, drawn once: background, the sounding object's outline, the distractors.
    bg = rng.uniform(0.02, 0.2, size=3) + rng.normal(0, 0.03, size=(size, size, 3))
    still = bg.astype(np.float32)[None]
    windows, scales = [], [MAX_SCALE]  # the sounding object's box holds its largest pulse
    for k, (cls, r, c) in enumerate(zip(members, radii, centres, strict=False)):  # placed only
        (top, left, _, _), x, y = win = _patch(c, r, thick, size)
        windows.append(win)
        rgb = np.asarray(classes[cls].rgb, dtype=np.float32)[None]
        if k == 0:
            ring = coverage(np.abs(shape_sdf(spec.shape, x, y, r * MAX_SCALE)) - thick / 2)
            paint(still, ring, OUTLINE * rgb, (top, left))
        else:
            scales.append(rng.uniform(0.75, 0.85))
            fill = coverage(shape_sdf(classes[cls].shape, x, y, r * scales[-1]))
            paint(still, fill, 0.6 * rgb, (top, left))
    frames = np.repeat(_to_uint8(still), n_frames, axis=0)

    # The sounding object pulses: only its window changes from frame to frame.
    env = envelope(np.arange(n_frames) / cfg.fps, onsets, TAU).astype(np.float32)
    (top, left, bottom, right), x, y = windows[0]
    patch = np.repeat(still[:, top:bottom, left:right], n_frames, axis=0)
    r = radii[0] * (SCALE[0] + SCALE[1] * env)[:, None, None]
    rgb = (BRIGHT[0] + BRIGHT[1] * env)[:, None] * np.asarray(spec.rgb, dtype=np.float32)
    paint(patch, coverage(shape_sdf(spec.shape, x, y, r)), rgb, (0, 0))
    frames[:, top:bottom, left:right] = _to_uint8(patch)
    boxes = [_norm_box(c, r * k, size) for c, r, k in zip(centres, radii, scales, strict=False)]

    n = int(round(cfg.duration * cfg.sample_rate))
    env_audio = envelope(np.arange(n) / cfg.sample_rate, onsets, TAU)
    signal = env_audio * tone(spec, n, cfg.sample_rate, rng)
    snr_db = rng.uniform(15, 25)
    noise_rms = np.sqrt(np.mean(signal**2) / 10 ** (snr_db / 10))
    audio = signal + noise_rms * background_noise(n, cfg.sample_rate, rng)
    audio *= 0.5 / (np.abs(audio).max() + 1e-12)
    return Clip(frames, audio.astype(np.float32), boxes[:1], boxes[1:], onsets)
