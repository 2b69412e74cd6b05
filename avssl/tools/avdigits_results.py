"""The AV-Digits benchmark's results: per-seed values, mean +- sd, baselines, targets, table.

Reads the evaluation JSONs that :mod:`avssl.tools.avdigits_benchmark` wrote (one folder per
seed, named after :data:`EVALUATIONS`) and judges issue #5's targets (README.md, "AV-Digits:
real speech and real handwriting") on the mean over seeds.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    """One reported number: where it is read and, for an issue target, its threshold.

    Attributes:
        name: its key in ``results.json``.
        label: its row in ``results.md``.
        source: the evaluation JSON it is read from (a key of :data:`EVALUATIONS`).
        key: the path of keys inside that JSON.
        target: the issue's threshold (the mean must reach it), or None: reported only.
        above: baselines (keys of :data:`BASELINES`) the mean must also exceed.
    """

    name: str
    label: str
    source: str
    key: tuple[str, ...]
    target: float | None = None
    above: tuple[str, ...] = ()


# evaluation name -> the evaluate.py command of the README's ev() (options added by the runner)
EVALUATIONS = {
    "avc": "avc",
    "avc_cohort": "avc --cohort 512",
    "retrieval": "retrieval --gallery avd16/gallery.jsonl",
    "localize_2x2": "localize (the 2x2 test split)",
    "localize_3x3": "localize --data avd3x3/manifest.jsonl --frame-size 84",
    "classify": "classify --dataset manifest --root avd3x3/manifest.jsonl --features model",
}
METRICS = (
    Metric("avc_accuracy", "AVC accuracy (raw; the target is judged on it)", "avc",
           ("accuracy",), 0.93),
    Metric("avc_accuracy_centred", "AVC accuracy, centred (`--cohort 512`; not judged)",
           "avc_cohort", ("accuracy",)),
    Metric("avc_roc_auc", "AVC ROC-AUC", "avc", ("roc_auc_easy",)),
    Metric("gallery_r1", "audio -> image R@1 (gallery)", "retrieval", ("a2v_gallery", "R@1"),
           0.88),
    Metric("gallery_map", "audio -> image mAP (gallery)", "retrieval", ("a2v_gallery", "mAP")),
    Metric("probe_accuracy", "linear probe accuracy (3x3 manifest)", "classify",
           ("accuracy_mean",), 0.86, ("probe_logmel", "probe_random")),
    Metric("pointing_2x2", "pointing 2x2", "localize_2x2", ("pointing",), 0.95),
    Metric("pointing_3x3", "pointing 3x3", "localize_3x3", ("pointing",), 0.88),
    Metric("ciou_adaptive_2x2", "adaptive cIoU@0.5, 2x2 (not a target)", "localize_2x2",
           ("ciou_adaptive@0.5",)),
    Metric("ciou_2x2", "cIoU@0.5, 2x2 (not a target)", "localize_2x2", ("ciou@0.5",)),
    Metric("auc_2x2", "AUC, 2x2 (not a target)", "localize_2x2", ("auc",)),
)  # fmt: skip
# baseline -> (label, evaluation JSON, key path): the untrained network of the first seed's
# config, and log-mel statistics on its front end (classify takes the checkpoint's)
BASELINES = {
    "probe_logmel": ("linear probe on log-mel features", "classify_logmel", ("accuracy_mean",)),
    "probe_random": ("linear probe on an untrained network", "classify_random",
                     ("accuracy_mean",)),
    "pointing_2x2_centre": ("pointing 2x2, centre prior", "localize_2x2",
                            ("baselines", "center", "pointing")),
    "pointing_3x3_centre": ("pointing 3x3, centre prior", "localize_3x3",
                            ("baselines", "center", "pointing")),
    "ciou_adaptive_2x2_centre": ("adaptive cIoU@0.5, 2x2, centre prior", "localize_2x2",
                                 ("baselines", "center", "ciou_adaptive@0.5")),
    "ciou_2x2_centre": ("cIoU@0.5, 2x2, centre prior", "localize_2x2",
                        ("baselines", "center", "ciou@0.5")),
    "auc_2x2_centre": ("AUC, 2x2, centre prior", "localize_2x2", ("baselines", "center", "auc")),
}  # fmt: skip


def lookup(result: dict, key: tuple[str, ...]) -> float | None:
    """The number at ``key`` inside an evaluation JSON (None when it is missing or null)."""
    for part in key:
        result = result.get(part) if isinstance(result, dict) else None
    return float(result) if isinstance(result, int | float) else None


TIE_TOLERANCE = 1e-9  # far below the 0.001 the results are printed at


def mean_sd(values: list[float | None]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (n - 1); None where undefined (a missing value, or
    the sd of a single seed)."""
    if not values or any(v is None for v in values):
        return None, None
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def judge(mean: float | None, threshold: float, above: list[float | None] = ()) -> bool:
    """Whether ``mean`` reaches ``threshold`` and exceeds every value of ``above``.

    A mean equal to the threshold but for float rounding reaches it: the mean of 0.94, 0.95 and
    0.96 is 0.9499999999999998, and pointing scores are such fractions (k / 500, or shares of
    tied maxima).
    """
    if mean is None or any(b is None for b in above):
        return False
    return mean >= threshold - TIE_TOLERANCE and all(mean > b for b in above)


def aggregate(per_seed: dict[int, dict[str, dict]], baseline_jsons: dict[str, dict]) -> dict:
    """``results.json``'s ``metrics``, ``baselines`` and ``targets``.

    Args:
        per_seed: seed -> evaluation name -> that evaluation's JSON.
        baseline_jsons: evaluation name -> JSON, for :data:`BASELINES` (the localisation
            JSONs of one seed carry the centre prior).
    """
    baselines = {
        name: lookup(baseline_jsons.get(source, {}), key)
        for name, (_, source, key) in BASELINES.items()
    }
    metrics, targets = {}, {}
    for m in METRICS:
        values = {s: lookup(evals.get(m.source, {}), m.key) for s, evals in per_seed.items()}
        mean, sd = mean_sd(list(values.values()))
        metrics[m.name] = {"per_seed": {str(s): v for s, v in values.items()}, "mean": mean,
                           "sd": sd, "source": f"{m.source}.json " + ".".join(m.key)}  # fmt: skip
        if m.target is not None:
            above = [baselines[b] for b in m.above]
            targets[m.name] = {"threshold": m.target, "mean": mean,
                               "met": judge(mean, m.target, above)}  # fmt: skip
            if m.above:
                targets[m.name]["above"] = {b: baselines[b] for b in m.above}
    targets["avc_accuracy"]["judged_on"] = "raw accuracy (avc_accuracy), not the centred one"
    return {"metrics": metrics, "baselines": baselines, "targets": targets}


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _training(seed: str, summary: dict) -> str:
    """``seed 0: 1500 steps in 10.5 min (bf16)``, from train.py's summary line."""
    text = f"seed {seed}: {summary.get('step', '?')} steps"
    if isinstance(summary.get("seconds"), int | float):
        text += f" in {summary['seconds'] / 60:.1f} min"
    if summary.get("precision"):
        text += f" ({summary['precision']})"
    return text + (", time-limited" if summary.get("time_limited") else "")


def markdown(results: dict) -> str:
    """``results.md``: metric | mean +- sd | per-seed | target | met, then the baselines."""
    seeds = ", ".join(str(s) for s in results["seeds"])
    lines = [
        "# AV-Digits benchmark (issue #5)",
        "",
        f"Test voices: {results.get('test_voices') or 'see data/avd16/prepare_report.json'}; "
        f"seeds {seeds}; `--audio-tta {results['audio_tta']:g}`; config "
        f"`{results['config']}`{_options(results)}. Mean ± sample standard deviation over the "
        "seeds.",
        "",
        "| metric | mean ± sd | per-seed | target | met |",
        "|---|---|---|---|---|",
    ]
    steps = [_training(s, t) for s, t in results.get("training", {}).items()]
    if steps:
        lines[4:4] = [f"Training: {'; '.join(steps)}.", ""]
    for m in METRICS:
        row = results["metrics"][m.name]
        sd = "" if row["sd"] is None else f" ± {row['sd']:.3f}"
        per_seed = " / ".join(_num(v) for v in row["per_seed"].values())
        target, met = "", ""
        if m.name in results["targets"]:
            target = f">= {m.target:g}" + (" and above both baselines" if m.above else "")
            met = "yes" if results["targets"][m.name]["met"] else "no"
        lines.append(f"| {m.label} | {_num(row['mean'])}{sd} | {per_seed} | {target} | {met} |")
    for name, (label, _, _) in BASELINES.items():
        lines.append(f"| baseline: {label} | {_num(results['baselines'][name])} | | | |")
    if skipped := results.get("skipped_items"):
        counts = ", ".join(f"{k} {n}" for k, n in skipped.items())
        lines += ["", f"Items the evaluations skipped (unreadable or missing media): {counts}."]
    return "\n".join(lines) + "\n"


def _options(results: dict) -> str:
    """The header's note of the options that change what was measured, when set."""
    parts = [f"`--set {item}`" for item in results.get("overrides", [])]
    parts += ["`--centre-trim`"] if results.get("centre_trim") else []
    parts += [f"`--data-seed {results['data_seed']}`"] if results.get("data_seed") else []
    return f" with {', '.join(parts)}" if parts else ""
