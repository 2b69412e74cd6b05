"""The feature extractor of ``evaluate.py classify`` (:mod:`avssl.eval.classify_cli`) that
``--features`` names: clip statistics (``logmel``, ``mfcc``) or a network's pooled window
embeddings (``model``, ``random``)."""

from __future__ import annotations

import torch

from avssl.cli_checkpoint import load_command_model, note_checkpoint
from avssl.errors import AvsslError
from avssl.eval.classify_checks import HANDCRAFTED
from avssl.eval.cli import apply_tta


def make_extractor(args, device):
    """The feature extractor named by ``--features`` and a description of it.

    Args:
        args: the parsed ``classify`` arguments (``features``, ``checkpoint``, ``layer``,
            ``hop``, ``pool``, ``precision``, ``batch_size``, TTA, ``seed``, ...).
        device: where a network runs.

    Returns:
        ``(extractor, info)``: a :class:`~avssl.eval.clip_features.LogMelStats`,
        :class:`~avssl.eval.clip_features.MfccStats` or
        :class:`~avssl.eval.clip_features.WindowEmbedder`, and the result's JSON entries that
        describe it.
    """
    from avssl.eval.clip_features import (
        DEFAULT_HOP,
        DEFAULT_POOL,
        MfccStats,
        WindowEmbedder,
        logmel_extractor,
    )

    if args.features in HANDCRAFTED:
        if args.features == "mfcc":
            return MfccStats(), {"features": "mfcc"}
        note_checkpoint(args.checkpoint)
        return logmel_extractor(args.checkpoint)
    if args.features == "model":
        from avssl.eval.provenance import provenance

        model, cfg, state = load_command_model(args.checkpoint, device)
        info = {"features": "model", "checkpoint": state["path"]}
        info.update(provenance(model, state, args.root if args.dataset == "manifest" else None))
    else:
        from avssl.config import Config
        from avssl.models import build_model
        from avssl.train.checkpoint import (
            build_checkpoint_model,
            checkpoint_config,
            load_checkpoint,
        )

        note_checkpoint(args.checkpoint)
        state = load_checkpoint(args.checkpoint) if args.checkpoint else None
        cfg = checkpoint_config(state) if state is not None else Config()
        init_seed = args.seed if args.init_seed is None else args.init_seed
        torch.manual_seed(init_seed)
        if state is not None:
            model = build_checkpoint_model(cfg, state["path"])
        else:
            model = build_model(cfg.model, cfg.data, cfg.loss)
        model = model.to(device).eval()
        info = {"features": "random", "seed": args.seed, "init_seed": init_seed}
    info.update(apply_tta(model, args))
    model.audio_layer = args.layer
    info["layer"] = args.layer
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    info.update(method=cfg.model.method, window_s=cfg.data.window, sample_rate=cfg.data.sample_rate)
    args.hop, args.pool = args.hop or DEFAULT_HOP, args.pool or DEFAULT_POOL
    if round(args.hop * cfg.data.sample_rate) < 1:
        raise AvsslError(f"--hop {args.hop:g} s is under one sample at {cfg.data.sample_rate} Hz")
    embedder = WindowEmbedder(
        model, cfg.data.sample_rate, cfg.data.window, args.hop, args.pool, device,
        args.precision, args.batch_size,
    )  # fmt: skip
    return embedder, info
