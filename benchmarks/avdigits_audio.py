"""Choosing AV-Digits audio options on the training speakers alone (leave one speaker out).

What limits AV-Digits is the audio tower's generalisation to a voice it has never heard. This
script measures that quickly for a config's audio front end and tower, without the vision side:
a supervised digit classifier (the config's front end and audio tower, then a linear layer)
trained on all training speakers but one and tested on the one held out, once per training
speaker. Only the manifest's train and val rows are read, so the test speakers never inform a
choice made with it. It is a proxy (cross-entropy on the digit labels, not the contrastive
binding), used to rank front-end options before the slower audio-visual runs.

``--ceiling`` measures something else, after the choices: the same classifier trained on every
training speaker's recordings and tested on the test speakers' recordings. That is what the
audio tower reaches *with* the digit labels, a ceiling to quote beside the self-supervised
linear probe (which is trained on the same labels, but on a frozen embedding learnt without
them). It reads the test rows, so it must never decide an option.

usage: python benchmarks/avdigits_audio.py --data data/avd3x3/manifest.jsonl
       [--config configs/avdigits-contrastive.yaml] [--set model.KEY=VALUE ...]
       [--steps 400] [--seed 0] [--ceiling]

The last stdout line is one JSON object: ``{"held_out": {speaker: accuracy}, "mean": ...,
"steps", "seed", "overrides", "seconds"}``; with ``--ceiling``, ``{"ceiling": accuracy,
"test_speakers": {speaker: accuracy}, "train_speakers": [...], "steps", ...}``.
"""

from __future__ import annotations

import sys

if __name__ == "__main__":  # the imports below, then main(), under the one-line error guard
    from avssl.cli import run_script

    sys.exit(run_script(__file__))

import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from avssl.cli import ArgumentParser, int_at_least, positive_int
from avssl.config import load_config
from avssl.data import media
from avssl.data.manifest import read_manifest, resolve
from avssl.errors import AvsslError
from avssl.features import build_audio_frontend
from avssl.models.towers import audio_tower
from avssl.prep.mnist import FSDD_NAME
from avssl.train import runtime

REPO = Path(__file__).resolve().parents[1]
MAX_STEPS = 1_000_000
MAX_SEED = 2**63 - 1  # torch.manual_seed's range


def load_recordings(manifest: Path, sample_rate: int, window: float, test: bool = False):
    """Waveforms ``[N, samples]``, digits ``[N]`` and speakers ``[N]`` of the train/val
    recordings, or with ``test`` of the test recordings (each recording once)."""
    seen, waves, digits, speakers = set(), [], [], []
    for row in read_manifest(manifest):
        if (row.split == "test") != test or row.audio in seen:
            continue
        seen.add(row.audio)
        name = FSDD_NAME.match(Path(row.audio).name)
        if name is None:
            continue
        path = resolve(manifest, row.audio)
        waves.append(media.read_audio(path, 0.0, window, sample_rate))
        digits.append(int(name.group(1)))
        speakers.append(name.group(2))
    if not waves:
        raise AvsslError(f"{manifest}: no {'test' if test else 'train/val'} FSDD recordings")
    return torch.stack(waves), torch.tensor(digits), np.array(speakers)


def held_out_predictions(cfg, waves, digits, train, test, steps: int, batch: int) -> Tensor:
    """Train front end + audio tower + linear on ``train`` rows; predicted digits of ``test``.

    Args:
        cfg: the config (front end, audio tower, learning rate, device, precision).
        waves: ``[N, samples]`` waveforms.
        digits: ``[N]`` labels.
        train: ``[N]`` boolean mask of the training rows.
        test: ``[N]`` boolean mask of the rows predicted.
        steps: optimisation steps.
        batch: clips per step.

    Returns:
        ``[test.sum()]`` predicted digits, on the CPU. Runs on ``train.device`` at
        ``train.precision`` (fp16 falls back to fp32: no loss scaler).
    """
    device = runtime.resolve_device(cfg.train.device)
    precision = runtime.resolve_precision(cfg.train.precision, device)
    precision = "fp32" if precision == "fp16" else precision
    front = build_audio_frontend(cfg.model.audio, cfg.data.sample_rate)
    tower = audio_tower(cfg.model)
    model = nn.Sequential(front, tower, nn.Linear(tower.out_dim, 10)).to(device)
    waves, digits = waves.to(device), digits.to(device)
    train, test = torch.as_tensor(train, device=device), torch.as_tensor(test, device=device)
    opt = torch.optim.AdamW(model.parameters(), cfg.train.lr, weight_decay=cfg.train.weight_decay)
    # warm-up over a tenth of the steps, but never a phase of zero length (OneCycleLR divides
    # by each phase's length: --steps 10 with 0.1 divided by zero)
    warm = min(0.75, max(0.1, 1.5 / steps))
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, cfg.train.lr, total_steps=steps, pct_start=warm
    )
    x, y = waves[train], digits[train]
    for _ in range(steps):
        i = torch.randint(len(x), (batch,)).to(device)
        with runtime.autocast(precision, device):
            loss = F.cross_entropy(model(x[i]).float(), y[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    model.eval()
    with torch.no_grad(), runtime.autocast(precision, device):
        pred = torch.cat([model(w).float().argmax(1) for w in waves[test].split(256)])
    return pred.cpu()


def ceiling(cfg, args) -> dict:
    """Trained on every training speaker, tested on the test speakers (``--ceiling``)."""
    train = load_recordings(args.data, cfg.data.sample_rate, cfg.data.window)
    test = load_recordings(args.data, cfg.data.sample_rate, cfg.data.window, test=True)
    waves, digits = torch.cat([train[0], test[0]]), torch.cat([train[1], test[1]])
    is_test = np.arange(len(waves)) >= len(train[0])
    torch.manual_seed(args.seed)
    pred = held_out_predictions(cfg, waves, digits, ~is_test, is_test, args.steps, args.batch_size)
    hit = (pred == test[1]).numpy()
    per = {s: round(float(hit[test[2] == s].mean()), 4) for s in sorted(set(test[2]))}
    return {
        "ceiling": round(float(hit.mean()), 4),
        "test_speakers": per,
        "train_speakers": sorted(set(train[2])),
    }


def leave_one_speaker_out(cfg, args) -> dict:
    """Each training speaker held out in turn (the default)."""
    waves, digits, speakers = load_recordings(args.data, cfg.data.sample_rate, cfg.data.window)
    if len(set(speakers)) < 2:  # holding the only one out leaves nothing to train on
        raise AvsslError(
            f"{args.data}: train/val recordings of {len(set(speakers))} speaker(s); holding one "
            "out needs at least 2 (or --ceiling, tested on the test speakers)"
        )
    result = {}
    for held in sorted(set(speakers)):
        torch.manual_seed(args.seed)
        test = speakers == held
        pred = held_out_predictions(cfg, waves, digits, ~test, test, args.steps, args.batch_size)
        acc = float((pred == digits[test]).float().mean())
        result[held] = round(acc, 4)
        print(f"held out {held}: {acc:.3f}", file=sys.stderr, flush=True)
    return {"held_out": result, "mean": round(float(np.mean(list(result.values()))), 4)}


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark the module docstring describes, with the command line ``argv``
    (default ``sys.argv[1:]``); the last stdout line is its JSON result. Returns 0."""
    p = ArgumentParser(prog="benchmarks/avdigits_audio.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True, help="an AV-Digits manifest.jsonl")
    p.add_argument("--config", default=str(REPO / "configs/avdigits-contrastive.yaml"))
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--steps", type=int_at_least(1, MAX_STEPS), default=400)
    p.add_argument("--batch-size", type=positive_int, default=128)
    p.add_argument("--seed", type=int_at_least(0, MAX_SEED), default=0)
    p.add_argument(
        "--ceiling",
        action="store_true",
        help="train on every training speaker, test on the test speakers: a number to report, "
        "never to choose with",
    )
    args = p.parse_args(argv)
    cfg = load_config(args.config, args.set)
    t0 = time.time()
    if args.ceiling:
        out = ceiling(cfg, args)
    else:
        out = leave_one_speaker_out(cfg, args)
    out.update(
        {
            "steps": args.steps,
            "seed": args.seed,
            "overrides": args.set,
            "seconds": round(time.time() - t0, 1),
        }
    )
    print(json.dumps(out))
    return 0
