"""Bad configs and run folders given to ``train.py``: one ``error:`` line, exit 2, nothing built.

Out-of-range sizes, counts and rates are refused before any folder is made or clip decoded; a
config file that is not UTF-8 or an override that is not YAML is named; a run that fails before
its first checkpoint leaves no folder behind that would block running it again.
"""

from __future__ import annotations

from functools import reduce
from pathlib import Path

import pytest
import torch
from bad_media import last_json
from conftest import poison_loss

import train
from avssl.config import Config, load_config
from avssl.config_checks import RANGES
from avssl.config_naming import naming_config_file
from avssl.errors import ConfigError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _one_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


@pytest.mark.parametrize(
    "override,message",
    [
        ("train.batch_size=-4", "train.batch_size: must be > 0, got -4"),  # hung at step 0
        ("train.batch_size=0", "train.batch_size: must be > 0, got 0"),
        ("train.lr=-1", "train.lr: must be > 0, got -1.0"),
        ("train.lr=nan", "train.lr: must be a finite number, got nan"),
        ("train.steps=0", "train.steps: must be > 0, got 0"),
        ("train.steps=-3", "train.steps: must be > 0, got -3"),
        ("train.log_every=0", "train.log_every: must be > 0, got 0"),
        ("data.window=0", "data.window: must be > 0, got 0.0"),
        ("data.frame_size=-8", "data.frame_size: must be > 0, got -8"),
        ("data.sample_rate=0", "data.sample_rate: must be > 0, got 0"),
        ("data.hard_fraction=1.5", "data.hard_fraction: must be in [0, 1], got 1.5"),
        ("model.channels=[8,-3]", "model.channels: every value must be > 0, got [8, -3]"),
        ("model.channels=[]", "model.channels: must not be empty"),
        ("model.embed_dim=0", "model.embed_dim: must be > 0, got 0"),
        ("model.audio={n_mels: 0}", "model.audio.n_mels: must be > 0, got 0"),
        ("data.window=0.01", "data.window: 0.01 s at data.sample_rate 16000 is 160 samples"),
        ("data.window=0.05", "data.window 0.05 s / data.frame_size 32: too small for the model"),
        pytest.param(
            "train.precision=fp16",
            "train.precision=fp16 needs CUDA",  # before any data is read
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="fp16 runs on CUDA"),
        ),
        ("train.lr=[1,", "--set train.lr: '[1,' is not valid YAML (ParserError)"),
        ("train.seed=-1", "train.seed: must be >= 0, got -1"),
        ("name=", "name: expected a string, got None"),
        ("name=[a,b]", "name: expected a string, got ['a', 'b']"),
        ("name=a/b", "name: must be a folder name (no '/'), got 'a/b'"),
        ("train.schedule=constnat", "train.schedule: must be one of cosine, constant, got 'con"),
        ("train.device=gpu", "train.device: device 'gpu': use auto, cpu, cuda or cuda:N"),
        ("train.device=mps", "train.device: device 'mps': use auto, cpu, cuda or cuda:N"),
        ("train.steps=true", "train.steps: expected int, got True"),  # was 1 step
        ("train.lr=false", "train.lr: expected float, got False"),
        ("train.steps.x=1", "--set train.steps.x: train.steps is a value, not a section"),
    ],
)
def test_bad_value_is_refused_before_any_folder(
    override, message, tiny_train_args, tmp_path, capsys
):
    refused_before_any_folder(override, message, tiny_train_args, tmp_path, capsys)


def refused_before_any_folder(override, message, tiny_train_args, tmp_path, capsys) -> None:
    """``train.py --set override`` stops with the one line ``error: message...``, exit 2, and
    no run folder."""
    run = tmp_path / "run"
    code = train.main([*tiny_train_args(override), "--run-dir", str(run)])
    line = _one_error(capsys)
    assert code == 2 and line.startswith(f"error: {message}"), line
    assert not run.exists() and not (tmp_path / "runs").exists()


def test_value_from_the_file_names_the_file(tmp_path):
    path = tmp_path / "neg.yaml"
    path.write_text("train:\n  lr: -1\nmodel:\n  channels: '[8,'\n")
    with pytest.raises(ConfigError, match=r"^.*neg.yaml: model.channels: '\[8,' is not valid YAML"):
        load_config(path)
    path.write_text("train:\n  lr: -1\n")
    with pytest.raises(ConfigError, match=r"^.*neg.yaml: train.lr: must be > 0, got -1.0$"):
        load_config(path)
    with pytest.raises(ConfigError, match=r"^train.lr: must be > 0, got -2.0$"):
        load_config(path, ["train.lr=-2"])  # the --set value is the one at fault
    assert load_config(path, ["train.lr=0.01"]).train.lr == 0.01  # an override mends the file


@pytest.mark.parametrize(
    "text,message",
    [
        ("model:\n  method: foo\n", "model.method: unknown method 'foo' (valid: "),
        ("model:\n  audio:\n    kind: mfcc\n", "model.audio.kind: unknown front end 'mfcc'"),
        ("model:\n  mil_pool: mean\n", "model.mil_pool: 'mean' (valid: lse, max)"),
        ("loss:\n  pair_negatives: all\n", "loss.pair_negatives: 'all' (sampled | batch;"),
        ("train:\n  ema_decay: 2\n", "train.ema_decay must be in [0, 1) (0: off), got 2.0"),
    ],
)
def test_a_value_the_model_refuses_names_the_file(text, message, tmp_path, capsys):
    """Values refused past the range checks (when the model is built, before any folder is
    made) name the config file that gave them, as the range checks do; not one ``--set`` gave."""
    path = tmp_path / "c7.yaml"
    path.write_text(text)
    runs = f"train.runs_dir={tmp_path / 'runs'}"
    assert train.main(["--config", str(path), "--set", runs, "--no-progress"]) == 2
    line = _one_error(capsys)
    assert line.startswith(f"error: {path}: {message}"), line
    assert line.count(str(path)) == 1
    # the key given by --set (over the file, or beside it) is the one at fault: no file named
    key, value = text.replace(" ", "").rstrip("\n").replace(":\n", ".").rsplit(":", 1)
    code = train.main(["--config", str(path), "--set", runs, "--set", f"{key}={value}"])
    assert code == 2 and _one_error(capsys).startswith(f"error: {message}")
    assert not (tmp_path / "runs").exists()


def _named(path, message: str, overrides=()) -> str:
    """The refusal ``message`` raised inside ``naming_config_file(path, overrides)``."""
    with pytest.raises(ConfigError) as err, naming_config_file(path, overrides):
        raise ConfigError(message)
    return str(err.value)


# avssl.train.memory's refusal: a section, for keys its reason names
MEMORY = (
    "model: 1.2 M parameters need 9 GB for their weights alone, more than the 1 GB free on cpu; "
    "make the widths (model.channels, model.embed_dim, model.head_hidden, model.fusion_hidden) "
    "smaller"
)


def test_a_refusal_naming_the_file_already_is_not_named_twice(tmp_path):
    from avssl.config_naming import leading_key
    from avssl.errors import UnknownMethodError

    path = tmp_path / "model"  # a file named as a section of the config
    path.write_text("model:\n  method: x\n  audio:\n    freq_mask: -1\n")
    assert _named(path, f"{path}: model.method: x") == f"{path}: model.method: x"
    assert _named(path, "m.jsonl: data.root: y") == "m.jsonl: data.root: y"  # another file's
    assert _named(path, "model.method: x") == f"{path}: model.method: x"
    assert _named(path, "model.method: x", ["model.method=x"]) == "model.method: x"
    assert _named(None, "model.method: x") == "model.method: x"  # no file
    # a section refused for one of its keys a --set gave; a key named in the reason, as a word
    masks = "model.audio: freq_mask, time_mask and spec_masks must be >= 0"
    assert _named(path, masks, ["model.audio.freq_mask=-1"]) == masks
    assert _named(path, masks, ["model.audio.n_mels=64"]) == f"{path}: {masks}"  # the file's
    window = "data.window: 800 samples, fewer than one frame (2048, model.audio)"
    assert _named(path, window, ["model.audio.n_fft=2048"]) == window  # its section named
    assert _named(path, "train.weight_decay: beside train.lr.", ["train.lr=1"]) == (
        "train.weight_decay: beside train.lr."
    )
    assert _named(path, "model.method: No module named 'm'", ["name=r"]).startswith(f"{path}: ")
    # the refusal's own type is kept (a caller may tell an unknown method apart)
    with (
        pytest.raises(UnknownMethodError, match=f"^{path}: model.method: "),
        naming_config_file(path),
    ):
        raise UnknownMethodError("model.method: unknown method 'x'")
    assert leading_key("model: 1.2 M parameters") == "model"
    assert leading_key("train.precision=fp16 needs CUDA") == "train.precision"
    assert leading_key("data.synthetic.seed: must be >= 0") == "data.synthetic.seed"
    assert leading_key("model.yaml: not UTF-8 text") is None
    assert leading_key("avssl.methods: mine = mine_plugin.mine:Mine") is None


def test_only_a_refusal_the_file_decided_names_it(tmp_path):
    """The file is named when it sets the refused key, or a key the refusal names (by itself or
    by its section), and no ``--set`` decided the refusal: not for a value left at its default."""
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  steps: 5\nmodel:\n  mil_pool: mean\n")
    # the file sets neither model.audio.kind nor a width the memory refusal names: defaults
    assert _named(path, "model.audio.kind: unknown front end 'x'") == (
        "model.audio.kind: unknown front end 'x'"
    )
    assert _named(path, MEMORY) == MEMORY
    assert _named(path, "model.mil_pool: 'mean' (valid: lse, max)").startswith(f"{path}: ")
    # set by the file, then by --set: the --set's value is refused
    assert (
        _named(path, "model.mil_pool: 'mean'", ["model.mil_pool=mean"]) == "model.mil_pool: 'mean'"
    )
    path.write_text("model:\n  channels: [4096]\n  audio:\n    n_mels: 64\n")
    assert _named(path, MEMORY) == f"{path}: {MEMORY}"  # a width the reason names
    assert _named(path, MEMORY, ["model.embed_dim=9999"]) == MEMORY  # a --set width decided
    # a section named by the reason, of a key the file sets
    window = "data.window: 0.01 s is 160 samples, fewer than one frame needs (model.audio)"
    assert _named(path, window) == f"{path}: {window}"
    assert _named(path, "data.window: 0.01 s needs model.audio.win_length") == (
        "data.window: 0.01 s needs model.audio.win_length"  # n_mels is no such key
    )


def test_a_range_refusal_names_the_file_only_for_its_keys(tmp_path):
    from avssl.config_checks import check_ranges
    from avssl.config_decided import written_keys

    cfg = Config()
    cfg.train.lr = -1.0
    with pytest.raises(ConfigError, match=r"^train.lr: must be > 0"):
        check_ranges(cfg, "c.yaml", file_keys={"train.steps", "model.audio.n_mels"})
    with pytest.raises(ConfigError, match=r"^c.yaml: train.lr: must be > 0") as err:
        check_ranges(cfg, "c.yaml", file_keys={"train.lr"})
    assert err.value.config_file == "c.yaml"
    with pytest.raises(ConfigError, match=r"^train.lr: must be > 0"):
        check_ranges(cfg, "c.yaml", ["train.lr=-1"], file_keys={"train.lr"})  # --set over it
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  lr: -1\n")
    with pytest.raises(ConfigError, match=f"^{path}: train.lr: must be > 0"):
        load_config(path)
    with pytest.raises(ConfigError, match=r"^train.lr: must be > 0, got -2.0$"):
        load_config(path, ["train.lr=-2"])
    # the keys as written: a section sets only the keys inside it (lr left at its default)
    written = written_keys({"train": {"steps": 5}, "model": {"audio": {"n_fft": 256}}, "data": {}})
    assert written == {"train.steps", "model.audio.n_fft"}
    with pytest.raises(ConfigError, match=r"^train.lr: must be > 0"):
        check_ranges(cfg, "c.yaml", file_keys=written)


def test_a_config_file_named_like_a_section_is_still_named(tmp_path, monkeypatch):
    """``--config ./model``: a refusal of the section ``model`` does not begin with that file's
    name, however alike they look; an error that names the file (``model: ...``) is kept."""
    monkeypatch.chdir(tmp_path)
    Path("model").write_text("model:\n  channels: [4096, 4096]\n")
    assert _named("./model", MEMORY) == f"model: {MEMORY}"  # spelt as load_config spells it
    assert _named("model", MEMORY) == f"model: {MEMORY}"
    Path("train").write_text("model:\n  methd: x\n")  # an unknown key, named by load_config
    with pytest.raises(ConfigError) as err, naming_config_file("./train"):
        load_config("./train")
    assert str(err.value).startswith("train: unknown config key 'model.methd'")
    Path("model").write_text("train:\n  lr: -1\n")
    with pytest.raises(ConfigError) as err, naming_config_file("./model"):
        load_config("./model")
    assert str(err.value) == "model: train.lr: must be > 0, got -1.0"


def test_config_file_with_a_key_twice_or_a_folder(tmp_path):
    path = tmp_path / "twice.yaml"
    path.write_text("train:\n  steps: 5\n  lr: 0.1\n  steps: 7\n")  # YAML would keep 7
    with pytest.raises(ConfigError, match=r"^.*twice.yaml: key 'steps' given twice \(line 4\)$"):
        load_config(path)
    with pytest.raises(ConfigError, match=r": is a directory, not a config file$"):
        load_config(tmp_path)
    merged = tmp_path / "merged.yaml"  # a merge key is YAML, not a key given twice
    merged.write_text("data:\n  <<: {fps: 5.0, window: 2.0}\n  window: 1.0\n")
    assert (load_config(merged).data.fps, load_config(merged).data.window) == (5.0, 1.0)


def test_shipped_configs_pass_the_range_checks():
    for path in sorted(CONFIGS.glob("*.yaml")):
        load_config(path)  # raises on an out-of-range value
    for key in RANGES:  # every key of the table names a numeric field (or a list of them)
        value = reduce(getattr, key.split("."), Config())
        assert all(
            isinstance(v, int | float) for v in (value if isinstance(value, list) else [value])
        )


def test_config_not_utf8(tiny_train_args, tmp_path, capsys):
    path = tmp_path / "binary.yaml"
    path.write_bytes(b"\xff\xfe\x00train:\n")
    code = train.main(["--config", str(path), *tiny_train_args()])
    assert code == 2 and _one_error(capsys) == f"error: {path}: not UTF-8 text"
    assert not (tmp_path / "runs").exists()


def test_run_dir_is_a_file(tiny_train_args, tmp_path, capsys):
    mine = tmp_path / "notes.txt"
    mine.write_text("mine")
    code = train.main([*tiny_train_args(), "--run-dir", str(mine)])
    line = _one_error(capsys)
    assert code == 2 and line == f"error: {mine}: run directory is an existing file, not a folder"
    assert mine.read_text() == "mine"


def test_default_run_name_taken_by_a_file(tiny_train_args, tmp_path, capsys):
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "taken").write_text("mine")
    code = train.main(tiny_train_args("name=taken", "train.steps=1", "train.eval_every=1"))
    out = capsys.readouterr().out
    assert code == 0 and last_json(out)["run_dir"] == str(tmp_path / "runs" / "taken-2")
    assert (tmp_path / "runs" / "taken").read_text() == "mine"


def test_resume_with_run_dir_is_refused(tmp_path, capsys):
    other = tmp_path / "other"
    code = train.main(["--resume", str(tmp_path / "run"), "--run-dir", str(other)])
    line = _one_error(capsys)
    assert code == 2 and line.startswith("error: --run-dir: cannot be used with --resume")
    assert not other.exists()
    code = train.main(["--resume", str(tmp_path / "run"), "--config", str(CONFIGS / "l3.yaml")])
    assert code == 2 and _one_error(capsys).startswith("error: --config: cannot be used with")


def test_failure_before_first_checkpoint_leaves_no_run_dir(
    tiny_train_args, tmp_path, capsys, monkeypatch
):
    # config.yaml is written, and metrics.jsonl at step 2, before the failure at step 2
    args = tiny_train_args("train.eval_every=100", "train.log_every=2")
    run = tmp_path / "run"
    poison_loss(monkeypatch, at_call=3)
    assert train.main([*args, "--run-dir", str(run)]) == 2
    err = capsys.readouterr().err
    errors = [x for x in err.splitlines() if x.startswith("error")]  # (others: progress notes)
    assert (
        errors
        == [
            "error: loss is nan at step 2; stopped. No checkpoint yet "
            "(try a lower train.lr or train.precision=fp32)"
        ]
        and "Traceback" not in err
    )
    assert not run.exists()
    # a folder the user made stays, emptied of what the run wrote (tests/test_leftovers_s22.py)
    mine = tmp_path / "mine"
    mine.mkdir()
    poison_loss(monkeypatch, at_call=1)
    assert train.main([*args, "--run-dir", str(mine)]) == 2
    capsys.readouterr()
    assert mine.is_dir() and not any(mine.iterdir())
    monkeypatch.undo()
    # the same --run-dir now runs; an out-of-range override at resume is refused
    assert train.main([*args, "--run-dir", str(run)]) == 0
    capsys.readouterr()
    code = train.main(["--resume", str(run), "--set", "train.batch_size=0", "--no-progress"])
    assert code == 2 and _one_error(capsys) == "error: train.batch_size: must be > 0, got 0"


def test_unreadable_manifest_is_the_only_line(tiny_train_args, tmp_path, capsys):
    """The data is read before the precision note, so a bad manifest is all the user sees."""
    bad = tmp_path / "m.jsonl"
    bad.write_bytes(b"\xff\xfe\x00 not text")
    code = train.main([*tiny_train_args(f"data.root={bad}"), "--run-dir", str(tmp_path / "r")])
    assert code == 2 and _one_error(capsys) == f"error: {bad}:1: not UTF-8 text"
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "argv,line",
    [
        (["--bogus"], "error: unrecognized arguments: --bogus (train.py --help)"),
        (["--set"], "error: --set: expected one argument (train.py --help)"),
    ],
)
def test_bad_flags_are_one_line(argv, line, capsys):
    with pytest.raises(SystemExit) as stop:
        train.main(argv)
    assert stop.value.code == 2 and capsys.readouterr().err.splitlines() == [line]


@pytest.mark.parametrize(
    "text",
    [
        "model:\n  channels: [8, 8, 8, 8, 8, 8, 8, 8]\n",
        "model:\n  conv1_stride: 64\n",
        "model:\n  audio:\n    win_length: 15900\n    n_fft: 16000\n",
    ],
)
def test_towers_left_without_output_by_the_file_name_it(text, tmp_path):
    """The towers' refusal begins with data.window, left at its default here: the keys the
    file set, which shape the towers, are named in it, so the file is named too."""
    path = tmp_path / "c.yaml"
    path.write_text(text)
    cfg = load_config(path)
    from avssl.train.model_check import check_model_config

    with pytest.raises(ConfigError) as err, naming_config_file(path):
        check_model_config(cfg)
    assert str(err.value).startswith(f"{path}: data.window 1 s / data.frame_size 64: too small")


def test_a_mapping_given_to_a_section_by_set_sets_only_its_keys(tmp_path):
    """``--set model.audio={n_mels: 64}`` changes n_mels alone (the README's rule): a refusal of
    another key of the section that the file set still names the file."""
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  audio:\n    n_fft: 0\n")
    with pytest.raises(ConfigError, match=rf"^{path}: model.audio.n_fft: must be"):
        load_config(path, ["model.audio={n_mels: 64}"])
    with pytest.raises(ConfigError, match=r"^model.audio.n_fft: must be"):
        load_config(path, ["model.audio={n_fft: 0}"])  # the mapping gave the refused key


def test_a_window_longer_than_its_fft_is_refused_with_the_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  audio:\n    win_length: 2048\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value) == (
        f"{path}: model.audio.win_length: 2048 is more than model.audio.n_fft 1024 (a frame of "
        "win_length samples is zero-padded to n_fft)"
    )
    with pytest.raises(ConfigError, match=r"^model.audio.win_length: 2048"):
        load_config(path, ["model.audio.n_fft=1024"])  # the --set of a key it names decided


def test_a_synthetic_world_refused_names_the_file_that_set_it(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  synthetic:\n    n_classes: 1\n")
    runs = ["--set", f"train.runs_dir={tmp_path / 'runs'}", "--no-progress"]
    assert train.main(["--config", str(path), *runs]) == 2
    assert _one_error(capsys) == (
        f"error: {path}: data.synthetic.n_classes: must be in [2, 10], got 1"
    )
    path.write_text("data:\n  synthetic:\n    fps: 0\n")
    assert train.main(["--config", str(path), *runs]) == 2
    assert _one_error(capsys).startswith(f"error: {path}: data.synthetic: duration and fps")


def test_the_file_is_spelt_as_load_config_spells_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("c.yaml").write_text("model:\n  mil_pool: mean\n")
    assert _named("./c.yaml", "model.mil_pool: 'mean'") == "c.yaml: model.mil_pool: 'mean'"
    Path("c.yaml").write_text("train:\n  lr: -1\n")
    with pytest.raises(ConfigError, match=r"^c\.yaml: train\.lr: "):
        load_config("./c.yaml")


@pytest.mark.parametrize(
    "text", ["data:\n  sample_rate: 8000\n", "model:\n  audio:\n    hop_length: 320\n"]
)
def test_too_many_time_spans_name_the_file_that_shaped_the_frames(text, tmp_path):
    """Fewer frames than 60 spans, a value the file did not set: the file set what framed them."""
    from avssl.models import build_model

    path = tmp_path / "c.yaml"
    path.write_text(text)
    cfg = load_config(path)
    cfg.model.audio_time_bins = 60
    with pytest.raises(ConfigError) as err, naming_config_file(path):
        build_model(cfg.model, cfg.data, cfg.loss)
    assert str(err.value).startswith(f"{path}: model.audio_time_bins: 60 is more spans than the")


def test_too_many_time_spans_do_not_name_a_file_that_set_only_the_bands(tmp_path):
    """The mel bands do not decide the frame count: a file that set only them is not named."""
    from avssl.models import build_model

    path = tmp_path / "c.yaml"
    path.write_text("model:\n  audio:\n    n_mels: 40\n")
    cfg = load_config(path)
    cfg.model.audio_time_bins = 60
    with pytest.raises(ConfigError) as err, naming_config_file(path):
        build_model(cfg.model, cfg.data, cfg.loss)
    assert str(err.value).startswith("model.audio_time_bins: 60 is more spans than the")
