"""The training loop: AMP, DDP, validation, atomic checkpoints, exact resume, clean stops.

Short and linear on purpose (in the spirit of DINO / MoCo v3 training scripts): set-up, then one
loop over steps that logs, validates and checkpoints.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from avssl.cli import json_line
from avssl.config import Config, to_dict
from avssl.data.source import load_split, manifest_path, resolve_domains
from avssl.data.stream_pairs import StreamPairs
from avssl.errors import TrainingError
from avssl.eval.avc import avc_metrics, calibrate_threshold, score_pairs
from avssl.models import build_model
from avssl.models.stats import stats_floats
from avssl.train import averaging, finished, preflight, rng, runtime, step_memory
from avssl.train import resume as resuming
from avssl.train.checkpoint import save_checkpoint, weights_digest
from avssl.train.data import batches_per_epoch, to_device
from avssl.train.divergence import check_validation, diverged_error
from avssl.train.epochs import draws_before_first_batch, training_batches
from avssl.train.optim import build_optimizer
from avssl.train.run_dir import record_config
from avssl.train.schedule import TimeBudget, agreed_plan, lr_factor
from avssl.train.signals import StopFlag
from avssl.train.summary import train_summary


def train(
    cfg: Config,
    run_dir: Path,
    resume: dict | None = None,
    progress: bool = True,
    strict: bool = False,
) -> dict:
    """Train ``cfg`` into ``run_dir``; returns the summary printed as the last stdout line.

    Under torchrun the caller leaves the process group, after rank 0's summary line.

    Args:
        cfg: the resolved configuration.
        run_dir: the run directory (created and checked by the caller on rank 0).
        resume: a loaded checkpoint to continue from exactly, or None.
        progress: show the progress bar.
        strict: a clip that cannot be decoded is an error (by default it is skipped, counted
            and listed in the summary's ``skipped``).
    """
    t0, budget_start = time.time(), time.monotonic()
    device = runtime.resolve_device(cfg.train.device)
    # its device, cuDNN's autotuner and TF32; the device before nccl's process group, as torch
    # asks (the group's collectives run on the current device)
    runtime.configure_cuda(device, cfg.train)
    dist_info = runtime.init_distributed(device)
    runtime.check_precision(cfg.train.precision, device)
    runtime.seed_everything(cfg.train.seed, cfg.train.deterministic)
    main_proc = dist_info.is_main
    progress = progress and main_proc

    manifest = None
    if dist_info.enabled:  # rank 0 builds the synthetic world; the others reuse it, silently
        if main_proc:
            manifest = manifest_path(cfg.data, progress)
        torch.distributed.barrier()
    if manifest is None:
        manifest = manifest_path(cfg.data, progress, announce=main_proc)
    resolve_domains(cfg, progress)
    domains = cfg.loss.domains if cfg.loss.domain_adversary > 0 else None
    # before decoding a clip; the digest of the validation rows best.pt is chosen on
    val_rows = preflight.check_manifest_rows(cfg, manifest, dist_info.world, resume)
    if cfg.data.stream:  # read shard by shard each epoch, never held in memory
        train_ds = StreamPairs(cfg.data, manifest, cfg.train.seed, dist_info.rank, dist_info.world)
    else:
        train_ds = load_split(
            cfg.data, "train", True, manifest=manifest, seed=cfg.train.seed, progress=progress,
            domains=domains,
        )  # fmt: skip
        preflight.check_train_clips(cfg, train_ds, manifest)
    val_ds = load_split(
        cfg.data, "val", False, manifest=manifest, windows_per_clip=cfg.train.val_windows,
        seed=cfg.train.seed + 1000, progress=progress,
    )  # fmt: skip
    skipped = [
        {"split": split, "id": item, "reason": reason}
        for split, ds in (("train", train_ds), ("val", val_ds))
        for item, reason in ds.skipped
    ]
    if strict and skipped:
        raise finished.strict_error(skipped)
    n_batches = batches_per_epoch(len(train_ds), cfg.train.batch_size, dist_info.world)
    if n_batches == 0:
        raise TrainingError(
            f"{manifest}: {len(train_ds)} training clips cannot fill one batch of "
            f"{cfg.train.batch_size} per process; lower train.batch_size"
        )

    precision = runtime.resolve_precision(cfg.train.precision, device)  # notes once data is good
    model = build_model(cfg.model, cfg.data, cfg.loss).to(device)
    train_ds.set_audio_keys(model.audio_keys())  # validation keeps every key (avc reads them)
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = build_optimizer(model, cfg.train)
    # before the average exists and before a resume's moments are loaded: both are counted. Who
    # warns: every process on CUDA (each has its own GPU), each machine's first one on the CPU
    warns = device.type == "cuda" or dist_info.local_rank == 0
    memory = step_memory.estimate_step_memory(model, val_ds, cfg, device, precision, warns)
    # what a resume with nothing left to train reports instead of loading the data again
    data_record = finished.record(device, precision, dist_info.world, memory, skipped)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    ema = averaging.build_ema(model, cfg.train.ema_decay)  # None unless train.ema_decay > 0
    scored = averaging.eval_model(model, ema)  # validated, checkpointed, evaluated
    step, epoch, start_batch, best = 0, 0, 0, None
    calibrated = resume.get("threshold_step") if resume else None  # the last validation's step
    shards = train_ds.stream.digest if cfg.data.stream else None
    layout = resuming.epoch_layout(cfg, len(train_ds), dist_info.world, shards)
    budget = TimeBudget.for_run(cfg.train, budget_start, resume)
    total = budget.planned  # the planned last step: train.max_minutes may bring it forward
    if resume is not None:
        resuming.restore_training(model, ema, opt, scaler, resume)
        step, best = resume["step"], resume.get("best")
        epoch, start_batch, note = resuming.resume_position(resume, layout)
        # only with steps left to train: a finished run draws nothing
        draws = rng.world_note(resume, dist_info.world) if step < total else None
        for line in (note, draws):
            if line and main_proc:
                print(line, file=sys.stderr)
    runner = runtime.training_runner(model, device, dist_info, cfg.train.compile)
    # the weights above start alike on every rank; each draws its own augmentations below
    rng.seed_rank(cfg.train.seed, dist_info.rank)
    rngs = {}  # every rank's generator states, gathered by every rank before a checkpoint

    def state(kind: str) -> dict:
        return {
            "kind": kind, **averaging.checkpoint_entries(model, ema), "optimizer": opt.state_dict(),
            "scaler": scaler.state_dict(), "step": step, "epoch": epoch,
            "batch_in_epoch": start_batch, "epoch_layout": layout, "best": best,
            "config": to_dict(cfg),
            **rngs, "precision": precision, "elapsed": budget.elapsed(),
            "planned_steps": total if budget.enabled else None,
            "last_validation": budget.last_validation, "threshold_step": calibrated,
            "val_rows": val_rows, finished.RECORD_KEY: finished.at_save(data_record, device),
        }  # fmt: skip

    def log(obj: dict) -> None:
        if main_proc:
            with open(run_dir / "metrics.jsonl", "a", encoding="utf-8") as fh:
                fh.write(json_line(obj) + "\n")

    def validate() -> dict:
        nonlocal best, calibrated
        t_val = time.monotonic()
        # with the training draws' generator states kept: how often a run validates must not
        # change its weights (the loaders of validation draw base seeds from them)
        cuda = [torch.cuda.current_device()] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):
            scores = score_pairs(scored, val_ds, device, precision, cfg.train.batch_size)
        check_validation(dict.fromkeys((model, scored)), scores, step, run_dir, main_proc)
        if getattr(model, "needs_calibration", False):
            # both copies: the average would otherwise drift back to the raw model's threshold
            threshold = calibrate_threshold(scores)
            model.decision_threshold.fill_(threshold)
            scored.decision_threshold.fill_(threshold)
            calibrated = step
        metrics = avc_metrics(scores, float(scored.decision_threshold))
        model.train()
        log({"step": step, "epoch": epoch, "split": "val", **metrics})
        if best is None or metrics["accuracy"] > best["accuracy"]:
            best = {"step": step, **metrics}
            if main_proc:
                save_checkpoint(run_dir / "best.pt", state("best"))
        budget.last_validation = time.monotonic() - t_val
        return metrics

    def save_last() -> None:
        save_checkpoint(run_dir / "last.pt", state("last"))
        # after the checkpoint, not before: a resume with --set that fails or is killed before
        # its first one leaves config.yaml the config of last.pt, which the next resume checks
        record_config(run_dir, cfg)

    if main_proc:
        if resume is None:
            record_config(run_dir, cfg)
        else:
            resuming.cut_metrics(run_dir / "metrics.jsonl", step)
    bar = tqdm(total=total, initial=step, disable=not progress, file=sys.stderr, desc="train")
    model.train()
    # data_wait: time blocked on the loader for the next batch (the share of step time
    # reported as data_wait_fraction: near 0 when loading keeps up with the model)
    seen, train_time, data_wait, window_t, window_n = 0, 0.0, 0.0, time.time(), 0
    budget.begin(step)
    batches = training_batches(
        train_ds, cfg, dist_info.rank, dist_info.world, device, epoch, start_batch, resume
    )
    with StopFlag() as stop, contextlib.closing(batches):
        if step < total and not stop.agreed(device):
            t_wait = time.time()
            for epoch, start_batch, raw in batches:
                t_step = time.time()
                data_wait += t_step - t_wait
                batch = to_device(raw, device, cfg.train.channels_last)
                for group in opt.param_groups:
                    group["lr"] = cfg.train.lr * lr_factor(step, cfg, total)
                with runtime.autocast(precision, device):
                    loss, stats = runner(batch)
                if not torch.isfinite(loss):  # the step's one wait for the device, before backward
                    raise diverged_error(loss.item(), step, run_dir, main_proc)
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                if ema is not None:
                    ema.update_parameters(model)
                step, start_batch = step + 1, start_batch + 1
                n = cfg.train.batch_size * dist_info.world
                seen, window_n = seen + n, window_n + n
                train_time += time.time() - t_step
                bar.update(1)
                if budget.enabled:
                    total = bar.total = agreed_plan(budget.plan(step), device)
                if step % cfg.train.log_every == 0 or step == total:
                    stats = stats_floats(stats)  # read from the device at logged steps only
                    rate = window_n / max(time.time() - window_t, 1e-9)
                    window_t, window_n = time.time(), 0
                    bar.set_postfix(
                        loss=f"{stats['loss']:.3f}",
                        acc=f"{stats.get('acc', 0):.2f}",
                        clips_s=f"{rate:.0f}",
                    )
                    log(
                        {
                            "step": step, "epoch": epoch, "split": "train",
                            "lr": opt.param_groups[0]["lr"], "clips_per_s": rate,
                            **({"planned_steps": total} if budget.enabled else {}), **stats,
                        }
                    )  # fmt: skip
                if step % cfg.train.eval_every == 0 or step == total:
                    t_eval = time.time()
                    rngs = rng.gather_states()  # collective: for best.pt and last.pt
                    validate()
                    if main_proc:
                        save_last()
                    window_t += time.time() - t_eval  # the logged rate is of training alone
                if step >= total or stop.agreed(device):
                    break
                t_wait = time.time()
        bar.close()
        # a signal during the last step stops nothing: the run is complete, not to be resumed
        interrupted = bool(stop.signum) and step < total  # alike on every rank: signals are agreed
        if not interrupted:  # the last step's signal, on any rank, is in every rank's summary
            stop.agreed(device)
        if interrupted:  # every rank takes part in the checkpoint: a second SIGINT ends none
            stop.finishing()
            if not seen:  # the batches never started: neither the loader's draw nor the resume's
                draws_before_first_batch(resume, dist_info.rank, cfg.train.seed)  # states made
            rngs = rng.gather_states()
        if interrupted and main_proc:  # rank 0 alone knows which folder it chose
            save_last()
            name = signal.Signals(stop.signum).name
            print(
                f"{name}: stopped at step {step}; checkpoint saved to {run_dir / 'last.pt'}. "
                f"Resume with: {resuming.resume_command(run_dir)}",
                file=sys.stderr,
            )
    digest = weights_digest(model)
    if dist_info.enabled:  # lets a user (and the tests) confirm that every rank ended identical
        sys.stderr.write(f"rank {dist_info.rank}: weights digest {digest}\n")  # one write
    return train_summary(
        cfg, run_dir, step, best, finished.at_save(data_record, device), digest, ema, t0,
        seen=seen, train_time=train_time, data_wait=data_wait, signum=stop.signum,
        interrupted=interrupted,
    )  # fmt: skip
