"""``avssl overlay``: a video of where the model hears the sound, with the original audio.

usage: avssl overlay VIDEO --checkpoint CKPT -o OUT.mp4 [--png SHEET.png] [--fps N]
                     [--alpha 0.5] [--cmap jet] [--max-side 480] [--max-seconds S] [--force]

Each output frame (at ``--fps``, default the video's rate capped at 25) is blended with the
model's localisation heatmap (``model.heatmap``, e.g. AVOL-Net, https://arxiv.org/abs/1712.06651)
for the ``cfg.data.window`` seconds of sound centred on that frame (zero-padded at the clip
edges). The model sees each frame resized as ``avssl index`` and ``query`` resize it (one decoding
pass also gives the picture shown, resized with FFmpeg's area filter). Each heatmap is min-max
normalised per frame, upsampled bilinearly to the frame size, colour-mapped and alpha-blended.
The output is H.264 (even size, longest side capped at ``--max-side``) with the source audio
re-encoded to AAC (mono or stereo), written in chunks and then renamed into place. ``--png``
writes a contact sheet of 8 evenly spaced overlay frames, before that rename (a sheet that fails
replaces neither output). Methods without a spatial map (l3, avenet) are refused. The last
stdout line is JSON.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from avssl.atomic_write import temp_sibling
from avssl.cli import ArgumentParser, dash_paths_last, names_json
from avssl.cli_checkpoint import load_command_model
from avssl.cli_outputs import check_new_file, check_not_empty
from avssl.data.media import probe, video_end
from avssl.errors import AvsslError, MediaError
from avssl.eval.embed import frames_to_input, heatmaps
from avssl.tools.overlay_video import OverlayWriter
from avssl.tools.stream_io import audio_end, iter_frame_views, read_audio_padded

OUT_EXTS = (".mp4", ".m4v", ".mov", ".mkv")
SHEET_FRAMES = 8


def output_size(height: int, width: int, max_side: int) -> tuple[int, int]:
    """``(H, W)`` keeping the aspect ratio, longest side at most ``max_side``, both even."""
    scale = min(1.0, max_side / max(height, width))
    return max(2, round(height * scale / 2) * 2), max(2, round(width * scale / 2) * 2)


def colormap_lut(name: str) -> torch.Tensor:
    """A matplotlib colormap as a uint8 ``[256, 3]`` lookup table."""
    import matplotlib

    try:
        cmap = matplotlib.colormaps[name]
    except KeyError:
        raise AvsslError(f"--cmap: unknown matplotlib colormap {name!r}") from None
    rgb = cmap(np.linspace(0.0, 1.0, 256))[:, :3]
    return torch.from_numpy((rgb * 255).round().astype(np.uint8))


def blend(
    frames: torch.Tensor, maps: torch.Tensor, lut: torch.Tensor, alpha: float
) -> torch.Tensor:
    """Alpha-blend colour-mapped heatmaps over frames.

    Args:
        frames: uint8 ``[B, H, W, 3]``.
        maps: float ``[B, h, w]`` heatmaps (any range; min-max normalised per frame).
        lut: uint8 ``[256, 3]`` colour table.
        alpha: heatmap opacity in [0, 1].

    Returns:
        uint8 ``[B, H, W, 3]``.
    """
    lo = maps.amin(dim=(1, 2), keepdim=True)
    hi = maps.amax(dim=(1, 2), keepdim=True)
    norm = (maps - lo) / (hi - lo).clamp_min(1e-8)
    up = F.interpolate(norm[:, None], size=frames.shape[1:3], mode="bilinear", align_corners=False)
    colour = lut[(up[:, 0].clamp(0, 1) * 255).round().long()]
    out = frames.float() * (1 - alpha) + colour.float() * alpha
    return out.round_().clamp_(0, 255).to(torch.uint8)


def centred_windows(seg: torch.Tensor, seg_start: float, times, sample_rate: int, window: float):
    """Windows ``[T, n]`` of ``seg`` (which starts at ``seg_start`` s) centred on ``times``."""
    n = int(round(window * sample_rate))
    starts = torch.from_numpy(np.round((times - window / 2 - seg_start) * sample_rate)).long()
    idx = (starts[:, None] + torch.arange(n)[None]).clamp(0, seg.shape[0] - 1)
    return seg[idx]


def _parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="avssl overlay", description=__doc__.splitlines()[0])
    p.add_argument("video", help="input video with an audio track")
    p.add_argument("--checkpoint", required=True, help="checkpoint of a model with a map")
    p.add_argument("-o", "--output", required=True, help="output video (.mp4)")
    p.add_argument("--png", help="also write a contact sheet of overlay frames here")
    p.add_argument("--fps", type=float, help="output frame rate (default: the video's, max 25)")
    p.add_argument("--alpha", type=float, default=0.5, help="heatmap opacity (default 0.5)")
    p.add_argument("--cmap", default="jet", help="matplotlib colormap (default jet)")
    p.add_argument("--max-side", type=int, default=480, help="longest output side (default 480)")
    p.add_argument("--max-seconds", type=float, help="only the first S seconds")
    p.add_argument("--chunk", type=int, default=32, help="frames processed at a time")
    p.add_argument("--device", default="cpu", help="cpu | auto | cuda[:N]")
    p.add_argument(
        "--precision",
        default="auto",
        help="auto (bf16 where fast) | bf16 | fp16 (CUDA only: refused on the CPU) | fp32",
    )
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    return p


def _resolved(path: str | os.PathLike) -> Path:
    """``path`` made absolute with its symlinks followed; a symlink loop is refused."""
    try:
        return Path(path).resolve()
    except RuntimeError:  # a loop before Python 3.13; its OSError(ELOOP) names the file itself
        raise AvsslError(f"{path}: is a symlink loop") from None


def _check_args(args) -> None:
    check_not_empty([("-o", args.output), ("--png", args.png)], "an empty file name")
    out = Path(args.output)
    if out.suffix.lower() not in OUT_EXTS:
        raise AvsslError(f"{out}: output must end in one of {', '.join(OUT_EXTS)}")
    for target in (args.output, args.png):
        if target:
            if _resolved(target) == _resolved(args.video):  # first: --force would not help
                raise AvsslError(f"{target}: is the input video (--force never overwrites it)")
            check_new_file(target, args.force)
    if args.png and _resolved(args.png) == _resolved(out):
        raise AvsslError(f"{args.png}: --png and -o name the same file")
    if not 0 <= args.alpha <= 1:
        raise AvsslError(f"--alpha must be in [0, 1], got {args.alpha}")
    if args.png and Path(args.png).suffix.lower() != ".png":
        raise AvsslError(f"{args.png}: --png must end in .png (the sheet is written as PNG)")
    # below 1 frame/s a frame outlasts a short excerpt (a 1-s excerpt at 0.001 fps declared
    # 1,000 s); an excerpt shorter than a frame held no audio
    if args.fps is not None and not 1 <= args.fps <= 120:
        raise AvsslError(f"--fps must be in [1, 120], got {args.fps}")
    if args.max_seconds is not None and not args.max_seconds >= 0.1:
        raise AvsslError(f"--max-seconds must be at least 0.1, got {args.max_seconds}")
    if args.max_side < 16:
        raise AvsslError(f"--max-side: must be at least 16, got {args.max_side}")
    if args.chunk < 1:
        raise AvsslError(f"--chunk: must be at least 1, got {args.chunk}")
    colormap_lut(args.cmap)  # a misspelt name costs nothing


def main(argv: list[str] | None = None) -> int:
    """``avssl overlay``: write the overlay video (and ``--png`` sheet); prints a JSON summary."""
    parser = _parser()
    args = parser.parse_args(dash_paths_last(parser, list(sys.argv[1:] if argv is None else argv)))
    _check_args(args)
    from avssl.train.runtime import resolve_device, resolve_precision

    device = resolve_device(args.device, "--device")
    model, cfg, state = load_command_model(args.checkpoint, device)
    if not model.has_map:
        raise AvsslError(
            f"{state['path']}: method {cfg.model.method!r} has no localisation map "
            "(overlays need avolnet, or contrastive with model.spatial=true)"
        )
    info = probe(args.video, shown=True)  # the overlay is written as the video is shown
    if info.kind != "video" or not info.width or not info.height:
        raise MediaError(args.video, "not a video")
    if not info.has_audio:
        raise MediaError(args.video, "no audio stream (the heatmap needs the sound)")
    if not info.duration:
        raise MediaError(args.video, "unknown duration")
    # the picture's own end: sound that goes on after the last frame is not drawn over it
    shown_s = video_end(args.video) or info.duration
    duration = min(shown_s, args.max_seconds or shown_s)
    # the default is held in [1, 25] as --fps is bounded: below 1 fps a frame's heatmap hears
    # one window of a longer stretch of sound
    fps = args.fps or min(max(info.fps or 25.0, 1.0), 25.0)
    size = output_size(info.height, info.width, args.max_side)
    lut = colormap_lut(args.cmap)
    # its note only once the inputs are good
    args.precision = resolve_precision(args.precision, device, "--precision")
    t0 = time.perf_counter()
    from avssl.sigterm import terminated_as_interrupt

    with terminated_as_interrupt():  # a SIGTERM cleans up the partial file as Ctrl-C does
        n_frames, sheet = render(model, cfg, args, info, duration, fps, size, lut)
    seconds = time.perf_counter() - t0
    summary = {
        "output": str(args.output),
        "frames": n_frames,
        "fps": fps,
        "width": size[1],
        "height": size[0],
        "duration": round(n_frames / fps, 3),
        "sheet": sheet,
        "precision": args.precision,
        "seconds": round(seconds, 3),
        "frames_per_s": round(n_frames / seconds, 2),
    }
    print(names_json(summary))
    return 0


def render(model, cfg, args, info, duration, fps, size, lut) -> tuple[int, str | None]:
    """Render the overlay video (and contact sheet); returns ``(frames, sheet path or None)``."""
    out = Path(args.output)
    d = cfg.data
    times = np.arange(max(1, round(duration * fps))) / fps
    pick = set(np.linspace(0, len(times) - 1, min(SHEET_FRAMES, len(times))).round().astype(int))
    sheet_frames: list[tuple[float, np.ndarray]] = []
    a_end = audio_end(args.video, info.duration)
    device = next(model.parameters()).device
    # a picture to look at, and the model's input resized as the other tools resize it
    side = (d.frame_size, d.frame_size)
    frames_iter = iter_frame_views(args.video, times, [(size, "AREA"), (side, None)])
    tmp = temp_sibling(out, keep_suffix=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    writer = OverlayWriter(tmp, size[1], size[0], fps, args.video, duration)
    try:
        for c0 in range(0, len(times), args.chunk):
            tc = times[c0 : c0 + args.chunk]
            shown, seen = zip(*[next(frames_iter) for _ in tc], strict=True)
            frames = torch.from_numpy(np.stack(shown))
            span = tc[-1] - tc[0] + d.window
            seg = read_audio_padded(args.video, tc[0] - d.window / 2, span, d.sample_rate, a_end)
            waves = centred_windows(seg, tc[0] - d.window / 2, tc, d.sample_rate, d.window)
            x = frames_to_input(torch.from_numpy(np.stack(seen)), d.frame_size)
            maps = heatmaps(model, x, waves, device, args.precision, batch_size=args.chunk)
            blended = blend(frames, maps, lut, args.alpha).numpy()
            writer.write(blended)
            sheet_frames += [(times[c0 + i], blended[i]) for i in range(len(tc)) if c0 + i in pick]
        writer.close()
    except BaseException:
        writer.abort(tmp)
        raise
    try:  # the sheet first: one that cannot be drawn or written replaces neither output
        if args.png:
            from avssl.tools.overlay_sheet import contact_sheet

            contact_sheet(args.png, sheet_frames, title=Path(args.video).name)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, out)
    return len(times), args.png
