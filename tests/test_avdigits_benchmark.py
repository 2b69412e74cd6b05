"""datasets/avdigits/benchmark.py: issue #5's protocol end to end on tiny data, continuing a
finished or half-finished folder, and the aggregation (mean, sample sd, targets met)."""

import importlib.util
import json
import math
import statistics
import sys

import numpy as np
import pytest
import soundfile as sf
from test_prep_avdigits import REPO, digit_images, write_idx

from avssl.tools.avdigits_results import (
    BASELINES,
    METRICS,
    aggregate,
    judge,
    lookup,
    markdown,
    mean_sd,
)
from avssl.tools.avdigits_stages import run_finished

SEEDS = (0, 1)
TINY_TRAINING = ["train.steps=2", "train.max_minutes=0", "train.eval_every=2"]
TINY_TRAINING += ["train.batch_size=16"]  # the config's 128 is more than 320 tiny clips fill


def load_entry():
    spec = importlib.util.spec_from_file_location("bench", REPO / "datasets/avdigits/benchmark.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """Tiny FSDD (speakers amy, bob, cat; takes 0 and 1) and MNIST, and one run of the
    benchmark on them with two seeds; returns (argv, out folder, stdout, stderr)."""
    tmp = tmp_path_factory.mktemp("bench")
    rec = tmp / "fsdd"
    rec.mkdir()
    t = np.arange(6000) / 8000
    for speaker in ("amy", "bob", "cat"):
        for digit in range(10):
            for take in range(2):  # take 0: validation, take 1: training (cat: test)
                wave = 0.3 * np.sin(2 * np.pi * (200 + 50 * digit + 7 * take) * t)
                sf.write(rec / f"{digit}_{speaker}_{take}.wav", wave, 8000, subtype="PCM_16")
    x, y = digit_images(200, 0)
    argv = ["--fsdd", str(rec), "--out", str(tmp / "out"), "--seeds", *map(str, SEEDS)]
    argv += ["--mnist-images", str(write_idx(tmp / "img.gz", x, 2051))]
    argv += ["--mnist-labels", str(write_idx(tmp / "lab.gz", y, 2049))]
    argv += [x for item in TINY_TRAINING for x in ("--set", item)]
    return argv, tmp / "out"


def run(argv, capsys):
    capsys.readouterr()
    code = load_entry()(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.slow
def test_end_to_end_then_continue(bench, capsys):
    argv, out = bench
    code, stdout, stderr = run(argv, capsys)
    assert code == 0, stderr
    assert json.loads(stdout.strip().splitlines()[-1])["results"] == str(out / "results.json")
    results = json.loads((out / "results.json").read_text())
    assert results["seeds"] == list(SEEDS) and results["test_voices"] == "cat"
    assert results["skipped_items"] == {} and results["centre_trim"] is False
    avc = json.loads((out / "eval/seed0/avc.json").read_text())
    assert avc["audio_tta"] and avc["threshold_from"].startswith("val")  # --audio-tta 0.2
    for m in METRICS:
        row = results["metrics"][m.name]
        values = [row["per_seed"][str(s)] for s in SEEDS]
        for s in SEEDS:  # each value is the one in that seed's evaluation JSON
            source = json.loads((out / f"eval/seed{s}/{m.source}.json").read_text())
            assert row["per_seed"][str(s)] == lookup(source, m.key) is not None
        assert row["mean"] == pytest.approx(statistics.fmean(values))
        assert row["sd"] == pytest.approx(statistics.stdev(values))
        if m.target is not None:
            target = results["targets"][m.name]
            above = [results["baselines"][b] for b in m.above]
            met = row["mean"] >= m.target and all(row["mean"] > b for b in above)
            assert target["threshold"] == m.target and target["met"] is met
    assert set(results["baselines"]) == set(BASELINES)
    assert all(v is not None for v in results["baselines"].values())
    assert set(results["targets"]) == {
        "avc_accuracy", "gallery_r1", "probe_accuracy", "pointing_2x2", "pointing_3x3"
    }  # fmt: skip
    table = (out / "results.md").read_text()
    for m in METRICS:
        assert f"| {m.label} |" in table
    assert "| metric | mean ± sd | per-seed | target | met |" in table
    assert "Training: seed 0: 2 steps in " in table and "; seed 1: 2 steps in " in table

    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    code, stdout2, stderr = run(argv, capsys)  # again: every stage is skipped
    assert code == 0 and stdout2 == stdout
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    skipped = [line for line in stderr.splitlines() if line.startswith("skip: ")]
    assert len(skipped) == 2 + len(SEEDS) * (1 + 6) + 2, stderr
    assert not [line for line in stderr.splitlines() if line.startswith(("prepare:", "train:"))]


@pytest.mark.slow
def test_half_finished_run_and_changed_settings(bench, capsys):
    argv, out = bench
    if not (out / "results.json").is_file():
        pytest.skip("needs test_end_to_end_then_continue's folder")
    assert run_finished(out / "runs/seed0")
    half = out / "runs/seed5"
    half.mkdir()
    (half / "config.yaml").write_text("name: x\n")
    assert not run_finished(half)
    code, stdout, stderr = run([*argv, "--seeds", "0", "5"], capsys)
    assert code == 2 and stdout == ""
    lines = stderr.strip().splitlines()
    assert lines[-1].startswith(f"error: {half}: a training run that did not finish")
    assert "holds no checkpoint: remove it" in lines[-1]  # --resume would find nothing
    assert (half / "config.yaml").read_text() == "name: x\n"  # untouched
    code, _, stderr = run([*argv, "--audio-tta", "0"], capsys)
    assert code == 2 and "run with other --audio-tta" in stderr
    code, _, stderr = run([*argv, "--centre-trim"], capsys)  # the data were trimmed otherwise
    assert code == 2 and "run with other --centre-trim" in stderr
    # a folder recorded before the option existed was trimmed to the middle: it goes on with
    # --centre-trim only
    settings = json.loads((out / "benchmark.json").read_text())
    try:
        old = {k: v for k, v in settings.items() if k != "centre_trim"}
        (out / "benchmark.json").write_text(json.dumps(old))
        code, _, stderr = run(argv, capsys)
        assert code == 2 and "run with other --centre-trim" in stderr
        code, _, stderr = run([*argv, "--centre-trim"], capsys)  # every stage is done: skipped
        assert code == 0, stderr
    finally:
        (out / "benchmark.json").write_text(json.dumps(settings))
    code, _, stderr = run([*argv[:1], str(out / "nope"), *argv[2:]], capsys)
    assert code == 2 and stderr.strip() == f"error: {out / 'nope'}: no such FSDD recordings folder"


@pytest.mark.slow
def test_failed_evaluation_stops_in_one_line_and_resumes(bench, capsys, monkeypatch):
    argv, out = bench
    if not (out / "results.json").is_file():
        pytest.skip("needs test_end_to_end_then_continue's folder")
    kept = out / "eval/seed1/retrieval.json"
    before, results = kept.read_bytes(), (out / "results.json").read_bytes()
    kept.unlink()

    def failing(argv):
        print("error: the evaluation's own reason", file=sys.stderr)
        return 2

    monkeypatch.setattr("avssl.eval.cli.main", failing)
    code, stdout, stderr = run(argv, capsys)
    assert code == 2 and stdout == "" and "Traceback" not in stderr
    assert stderr.strip().splitlines()[-2:] == [
        "error: the evaluation's own reason",
        f"error: {kept}: evaluate.py retrieval stopped (exit status 2; see above)",
    ]
    assert not kept.exists() and not kept.with_name(kept.name + ".part").exists()
    monkeypatch.undo()
    code, _, stderr = run(argv, capsys)  # the one missing evaluation runs again
    assert code == 0, stderr
    again, first = (json.loads(x)["a2v_gallery"] for x in (kept.read_bytes(), before))
    assert [again["R@1"], again["mAP"]] == pytest.approx([first["R@1"], first["mAP"]])
    now, earlier = (json.loads(x)["metrics"]["gallery_r1"]["per_seed"]
                    for x in ((out / "results.json").read_bytes(), results))  # fmt: skip
    assert now == pytest.approx(earlier)


def test_aggregate_hand_made():
    assert mean_sd([0.9, 0.95, 1.0]) == (pytest.approx(0.95), pytest.approx(0.05))
    assert mean_sd([0.5]) == (0.5, None)  # no sample sd of one seed
    assert mean_sd([0.5, None]) == (None, None)
    assert judge(0.93, 0.93) and not judge(0.929, 0.93) and not judge(None, 0.5)
    # a mean equal to the threshold but for float rounding reaches it
    assert judge(mean_sd([0.94, 0.95, 0.96])[0], 0.95)
    assert judge(mean_sd([0.69, 0.95, 1.0])[0], 0.88)
    assert judge(0.9, 0.86, [0.5, 0.2]) and not judge(0.9, 0.86, [0.95, 0.2])

    def evals(acc, r1, probe, p2, p3):
        loc = {"ciou@0.5": 0.0, "ciou_adaptive@0.5": 0.1, "auc": 0.3}
        centre = {"baselines": {"center": {**loc, "pointing": 0.25}}}
        return {
            "avc": {"accuracy": acc, "roc_auc_easy": 0.9},
            "avc_cohort": {"accuracy": acc + 0.05},
            "retrieval": {"a2v_gallery": {"R@1": r1, "mAP": 0.7}},
            "classify": {"accuracy_mean": probe},
            "localize_2x2": {"pointing": p2, **loc, **centre},
            "localize_3x3": {"pointing": p3, **centre},
        }

    per_seed = {0: evals(0.92, 0.9, 0.88, 0.97, 0.9), 1: evals(0.95, 0.87, 0.9, 0.94, 0.85)}
    base = {**per_seed[0], "classify_logmel": {"accuracy_mean": 0.45},
            "classify_random": {"accuracy_mean": 0.89}}  # fmt: skip
    results = aggregate(per_seed, base)
    acc = results["metrics"]["avc_accuracy"]
    assert acc["per_seed"] == {"0": 0.92, "1": 0.95} and acc["mean"] == pytest.approx(0.935)
    assert acc["sd"] == pytest.approx(math.sqrt(2 * 0.015**2))
    met = {name: t["met"] for name, t in results["targets"].items()}
    # 0.935 >= 0.93; R@1 0.885 >= 0.88; probe 0.89 not above the random network's 0.89;
    # pointing 0.955 >= 0.95; 3x3 0.875 < 0.88
    assert met == {"avc_accuracy": True, "gallery_r1": True, "probe_accuracy": False,
                   "pointing_2x2": True, "pointing_3x3": False}  # fmt: skip
    assert results["targets"]["probe_accuracy"]["above"] == {"probe_logmel": 0.45,
                                                             "probe_random": 0.89}  # fmt: skip
    assert results["baselines"]["pointing_3x3_centre"] == 0.25
    table = markdown({**results, "seeds": [0, 1], "audio_tta": 0.2, "config": "c.yaml"})
    assert "| AVC accuracy (raw; the target is judged on it) | 0.935 ± 0.021 | 0.920 / 0.950 |" \
        " >= 0.93 | yes |" in table  # fmt: skip
    assert "| baseline: linear probe on log-mel features | 0.450 | | | |" in table
    assert "Items the evaluations skipped" not in table and " with `" not in table
    # what changes the measurement is in the header; skipped media are counted below the table
    options = {"overrides": ["train.steps=7"], "centre_trim": True, "data_seed": 3}
    table = markdown({**results, "seeds": [0], "audio_tta": 0, "config": "c.yaml", **options,
                      "skipped_items": {"seed0/avc": 3}})  # fmt: skip
    assert "config `c.yaml` with `--set train.steps=7`, `--centre-trim`, `--data-seed 3`." in table
    assert "Items the evaluations skipped (unreadable or missing media): seed0/avc 3." in table


def test_settings_bind_only_once_something_is_built(tmp_path, capsys):
    from argparse import Namespace

    from avssl.errors import AvsslError
    from avssl.tools.avdigits_folder import SETTINGS, check_settings

    out = tmp_path / "out"
    config = tmp_path / "c.yaml"
    config.write_text("train: {steps: 2}\n")
    args = Namespace(out=out, seeds=[0], mnist_images=tmp_path / "bad.gz", overrides=[],
                     config=config)  # fmt: skip
    check_settings(args)
    assert json.loads((out / SETTINGS).read_text())["mnist_images"].endswith("bad.gz")
    # the first attempt stopped before building anything (say, a corrupt MNIST file): a rerun
    # with the file corrected takes over the folder
    args.mnist_images = tmp_path / "good.gz"
    check_settings(args)
    assert json.loads((out / SETTINGS).read_text())["mnist_images"].endswith("good.gz")
    assert "replaced (the earlier attempt built nothing)" in capsys.readouterr().err
    # once a prepared folder exists, the settings are bound
    (out / "data/avd16").mkdir(parents=True)
    (out / "data/avd16/manifest.jsonl").write_text("")
    args.overrides = ["train.steps=3"]
    with pytest.raises(AvsslError, match="this folder was run with other --set"):
        check_settings(args)
    args.overrides, args.seeds = [], [0, 1]  # the seeds may always change
    check_settings(args)
    # the config's contents are bound too: an edit would mix two configs across seeds
    config.write_text("train: {steps: 3}\n")
    with pytest.raises(AvsslError, match=r"other --config \(its contents changed\)"):
        check_settings(args)
    # evaluations alone bind as well (data and runs deleted, the results would be reused)
    config.write_text("train: {steps: 2}\n")
    (out / "data/avd16/manifest.jsonl").unlink()
    (out / "eval/seed0").mkdir(parents=True)
    (out / "eval/seed0/avc.json").write_text("{}")
    args.overrides = ["train.steps=3"]
    with pytest.raises(AvsslError, match="this folder was run with other --set"):
        check_settings(args)
    # a folder recorded before the config's contents were: unknown there, not a change
    recorded = json.loads((out / SETTINGS).read_text())
    del recorded["config_sha256"]
    (out / SETTINGS).write_text(json.dumps(recorded))
    args.overrides = []
    check_settings(args)  # ... and it binds from now on
    assert "config_sha256" in json.loads((out / SETTINGS).read_text())


def test_settings_file_damaged_and_options_the_benchmark_owns(tmp_path):
    from argparse import Namespace

    from avssl.errors import AvsslError
    from avssl.tools.avdigits_folder import SETTINGS, check_inputs, check_settings

    out = tmp_path / "out"
    out.mkdir()
    config = tmp_path / "c.yaml"
    config.write_text("{}\n")
    args = Namespace(out=out, seeds=[0], overrides=[], config=config)
    for text in (b'{"fsdd": "x", ', b"[1, 2]", b"\xff\xfe"):  # an interrupted write, ...
        (out / SETTINGS).write_bytes(text)
        with pytest.raises(AvsslError, match=f"{SETTINGS}: not .*the benchmark's settings"):
            check_settings(args)
    (out / SETTINGS).unlink()
    check_settings(args)
    recorded = json.loads((out / SETTINGS).read_text())
    assert recorded["overrides"] == [] and len(recorded["config_sha256"]) == 64
    assert not list(out.glob("*.part"))
    for seeds, overrides, reason in (
        ([2**32], [], "--seeds: 4294967296 is above 4294967295"),
        ([0], ["train.seed=3"], "--set train.seed=3: the benchmark sets each run's seed"),
        ([0], ["data.root=x"], "--set data.root=x: the benchmark trains on the folder"),
    ):
        with pytest.raises(AvsslError, match=reason):
            check_inputs(Namespace(seeds=seeds, overrides=overrides))


@pytest.mark.slow
def test_stale_or_damaged_evaluations_are_redone_and_copies_refused(bench, capsys, tmp_path):
    import shutil

    argv, out = bench
    if not (out / "results.json").is_file():
        pytest.skip("needs test_end_to_end_then_continue's folder")
    avc, loc = out / "eval/seed0/avc.json", out / "eval/seed1/localize_3x3.json"
    good = json.loads(avc.read_text())
    avc.write_text(json.dumps({**good, "weights_digest": "0" * 16}))  # of other weights
    loc.write_text(loc.read_text()[:40])  # cut short
    # results of the rules before 2026-12-06 (pointing's ties, the log-mel front end)
    old_rule = out / "eval/seed0/localize_2x2.json"
    old_rule.write_text(json.dumps({k: v for k, v in json.loads(old_rule.read_text()).items()
                                    if k != "pointing_ties"}))  # fmt: skip
    logmel = out / "eval/baselines/classify_logmel.json"
    logmel.write_text(json.dumps({"accuracy_mean": 0.1}))
    code, _, stderr = run(argv, capsys)
    assert code == 0, stderr
    assert f"redo: seed 0 localize_2x2 ({old_rule} was made by an earlier version" in stderr
    assert f"redo: baseline logmel ({logmel} was made by an earlier version" in stderr
    assert "frontend" in json.loads(logmel.read_text())  # on the config's front end now
    assert f"redo: seed 0 avc ({avc} evaluated weights {'0' * 16}, now " in stderr
    assert f"redo: seed 1 localize_3x3 ({loc} is damaged)" in stderr
    assert json.loads(avc.read_text())["weights_digest"] == good["weights_digest"]
    assert json.loads(loc.read_text())["pointing"] is not None
    # a copy of the folder: its runs were trained on the original's data, which its
    # evaluations would read; refused before one runs (what is done is still reported)
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    moved = [*argv[: argv.index("--out") + 1], str(copy), *argv[argv.index("--out") + 2 :]]
    code, _, stderr = run(moved, capsys)
    assert code == 0, stderr
    # a finished run without its train.json (killed just after training): kept, its step read
    (copy / "eval/seed0/train.json").unlink()
    code, _, stderr = run(moved, capsys)
    assert code == 0 and "(its last.pt reached the last step)" in stderr, stderr
    assert json.loads((copy / "eval/seed0/train.json").read_text())["step"] == 2
    # ... unless it was made with other steps (finished by hand with --resume --set ...)
    import torch

    state = torch.load(copy / "runs/seed0/last.pt", weights_only=False)
    state["config"]["train"]["steps"] = 60
    torch.save(state, copy / "runs/seed0/last.pt")
    (copy / "eval/seed0/train.json").unlink()
    code, _, stderr = run(moved, capsys)
    assert code == 2 and "trained with train.steps=60, not the benchmark's 2" in stderr, stderr
    # ... or any other setting that changes the weights (a learning rate, a mask)
    state["config"]["train"]["steps"] = 2
    state["config"]["train"]["lr"] = 0.5
    state["config"]["model"]["audio"]["freq_mask"] = 3
    torch.save(state, copy / "runs/seed0/last.pt")
    code, _, stderr = run(moved, capsys)
    assert code == 2 and "trained with model.audio.freq_mask=3, not the benchmark's" in stderr
    assert "(and 1 more)" in stderr, stderr
    (copy / "eval/seed1/avc.json").unlink()
    shutil.rmtree(copy / "runs/seed0")
    shutil.copytree(out / "runs/seed0", copy / "runs/seed0")
    shutil.copy(out / "eval/seed0/train.json", copy / "eval/seed0/train.json")
    code, _, stderr = run(moved, capsys)
    assert code == 2 and stderr.strip().splitlines()[-1].startswith(
        f"error: {copy / 'runs/seed1'}: trained on {out.resolve() / 'data/avd16'}, not on "
    )


def test_a_stop_during_the_last_step_ends_the_benchmark(tmp_path, monkeypatch):
    # train.py finishes a run whose last step was under way when the signal came (exit 0,
    # "interrupted": false); the benchmark keeps the run and stops instead of evaluating
    from argparse import Namespace

    from avssl.errors import Terminated
    from avssl.tools import avdigits_stages

    for signum, raised in ((2, KeyboardInterrupt), (15, Terminated)):

        def finished(argv, signum=signum):
            print(json.dumps({"run_dir": "r", "interrupted": False, "stop_signal": signum}))
            return 0

        monkeypatch.setattr("avssl.train.cli.main", finished)
        out = tmp_path / str(signum)
        with pytest.raises(raised):
            avdigits_stages.train(Namespace(out=out, config="c.yaml", overrides=[]), 0)
        assert json.loads((out / "eval/seed0/train.json").read_text())["stop_signal"] == signum


def test_changed_input_files_are_not_served_the_old_results(tmp_path):
    """The same --fsdd / --mnist-* paths holding other data (a test voice's recordings removed,
    so another voice becomes the test voice) must not reuse the folder's prepared data and
    results."""
    from argparse import Namespace

    from avssl.errors import AvsslError
    from avssl.tools.avdigits_folder import SETTINGS, check_settings

    rec, out = tmp_path / "fsdd", tmp_path / "out"
    rec.mkdir()
    for name in ("0_amy_0.wav", "0_bob_0.wav", "0_cat_0.wav"):
        (rec / name).write_bytes(name.encode())
    (tmp_path / "c.yaml").write_text("{}\n")
    (tmp_path / "img.gz").write_bytes(b"images")
    args = Namespace(out=out, seeds=[0], overrides=[], config=tmp_path / "c.yaml", fsdd=rec,
                     mnist_images=tmp_path / "img.gz")  # fmt: skip
    check_settings(args)
    (out / "data/avd16").mkdir(parents=True)
    (out / "data/avd16/manifest.jsonl").write_text("")
    check_settings(args)  # the same data: a rerun continues
    (rec / "0_cat_0.wav").unlink()
    with pytest.raises(AvsslError, match=r"other --fsdd \(its recordings changed\)"):
        check_settings(args)
    (rec / "0_cat_0.wav").write_bytes(b"another recording")
    with pytest.raises(AvsslError, match=r"other --fsdd \(its recordings changed\)"):
        check_settings(args)
    (rec / "0_cat_0.wav").write_bytes(b"0_cat_0.wav")
    (rec / "notes.txt").write_text("not read by prepare")
    check_settings(args)
    (tmp_path / "img.gz").write_bytes(b"other images")
    with pytest.raises(AvsslError, match=r"other --mnist-images \(its contents changed\)"):
        check_settings(args)
    # a folder recorded before the inputs were: unknown there, not a change; binds from now on
    recorded = json.loads((out / SETTINGS).read_text())
    del recorded["fsdd_sha256"], recorded["mnist_images_sha256"]
    (out / SETTINGS).write_text(json.dumps(recorded))
    check_settings(args)
    assert json.loads((out / SETTINGS).read_text())["mnist_images_sha256"] is not None


def test_inputs_of_the_wrong_kind_are_refused_saying_so(tmp_path):
    """A file given as --fsdd, or a folder as an MNIST file, exists: "no such ..." was wrong."""
    from argparse import Namespace

    from avssl.errors import AvsslError
    from avssl.tools.avdigits_folder import check_inputs

    (tmp_path / "0_amy_0.wav").write_bytes(b"")
    (tmp_path / "lab.gz").write_bytes(b"")
    args = Namespace(seeds=[0], overrides=[], test_mnist_images=None, test_mnist_labels=None,
                     fsdd=tmp_path / "0_amy_0.wav", mnist_images=tmp_path,
                     mnist_labels=tmp_path / "lab.gz")  # fmt: skip
    with pytest.raises(AvsslError, match=r"0_amy_0.wav: not a folder \(--fsdd is the FSDD"):
        check_inputs(args)
    args.fsdd = tmp_path
    with pytest.raises(AvsslError, match=r": a folder, not an MNIST IDX file \(name the file\)"):
        check_inputs(args)
    args.mnist_images = tmp_path / "missing.gz"
    with pytest.raises(AvsslError, match=r"missing.gz: no such MNIST file"):
        check_inputs(args)
    args.fsdd = tmp_path / "missing"
    with pytest.raises(AvsslError, match=r"missing: no such FSDD recordings folder"):
        check_inputs(args)


@pytest.mark.parametrize("config", ["avdigits-avenet.yaml", "avdigits-l3.yaml"])
def test_a_config_without_a_localisation_map_is_refused_before_training(tmp_path, capsys, config):
    """avenet and l3 trained every seed (about 20 minutes each) and then stopped at the first
    localisation, with no results written."""
    argv = ["--fsdd", str(tmp_path), "--mnist-images", str(tmp_path / "i.gz")]
    argv += ["--mnist-labels", str(tmp_path / "l.gz"), "--out", str(tmp_path / "out")]
    code, _, err = run([*argv, "--config", str(REPO / "configs" / config)], capsys)
    assert code == 2 and "Traceback" not in err
    assert f"{config}: method" in err and "has no localisation map" in err
    assert not (tmp_path / "out").exists()


def test_run_settings_accept_the_domains_training_filled_in(tmp_path):
    """``--set loss.domain_adversary=W``: the run fills ``loss.domains`` from the training rows
    (the speakers) and saves them; a run the benchmark trained itself, found again (resumed
    with the printed hint), is no run of other settings. Other domains or a weight still are."""
    import argparse

    import torch

    from avssl.config import load_config, to_dict
    from avssl.errors import AvsslError
    from avssl.tools.avdigits_benchmark import CONFIG
    from avssl.tools.avdigits_stages import check_run_settings
    from avssl.train.checkpoint import FORMAT

    overrides = [*TINY_TRAINING, "loss.domain_adversary=1.0"]
    args = argparse.Namespace(config=CONFIG, overrides=overrides)
    cfg = load_config(CONFIG, ["data.root=/data/avd16", "train.seed=1", *overrides])
    cfg.loss.domains = ["amy", "bob"]  # what resolve_domains fills in as training starts
    run_dir = tmp_path / "seed1"
    run_dir.mkdir()
    torch.save({"format": FORMAT, "config": to_dict(cfg), "step": 2}, run_dir / "last.pt")
    check_run_settings(args, run_dir, 1)
    with pytest.raises(AvsslError, match="domain_adversary=1.0, not the benchmark's 0.5"):
        check_run_settings(argparse.Namespace(config=CONFIG, overrides=[*overrides[:-1],
                           "loss.domain_adversary=0.5"]), run_dir, 1)  # fmt: skip
    with pytest.raises(AvsslError, match="loss.domains=\\['amy', 'bob'\\], not the benchmark's"):
        check_run_settings(argparse.Namespace(config=CONFIG, overrides=[*overrides,
                           "loss.domains=[amy, cat]"]), run_dir, 1)  # fmt: skip
