"""Build a run's model once, off the record, before any folder is made or clip decoded."""

from __future__ import annotations

from avssl.config import Config


def check_model_config(cfg: Config):
    """Build the model once, off the record, so a refused model config (or weight averaging
    setting) fails before any folder is made or any clip decoded (a fraction of a second even at
    paper size).

    Returns:
        The model built, in eval mode (the run builds its own).

    Raises:
        ConfigError: the model settings are refused, or its training state alone would not fit
            in the device's free memory (:mod:`avssl.train.memory`).
    """
    import torch

    from avssl.models import build_model, embedding_dims
    from avssl.train.averaging import check_decay
    from avssl.train.memory import check_model_fits
    from avssl.train.runtime import check_precision, resolve_device

    check_decay(cfg.train.ema_decay)
    device = resolve_device(cfg.train.device)
    check_precision(cfg.train.precision, device)
    check_model_fits(cfg, device)  # counted without allocating: a huge model is not built
    with torch.random.fork_rng(devices=[]):  # the run's own initialisation stays as it was
        model = build_model(cfg.model, cfg.data, cfg.loss).eval()
        embedding_dims(model, cfg.data)
    return model
