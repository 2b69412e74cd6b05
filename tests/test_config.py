from pathlib import Path

import pytest

from avssl.config import Config, config_from_dict, dump_yaml, load_config, to_dict
from avssl.errors import ConfigError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_defaults_round_trip(tmp_path):
    cfg = load_config(None, ["train.steps=7", "model.channels=[8, 16]", "data.root=/x/m.jsonl"])
    assert cfg.train.steps == 7 and cfg.model.channels == [8, 16] and cfg.data.root == "/x/m.jsonl"
    assert config_from_dict(to_dict(cfg)) == cfg
    path = tmp_path / "c.yaml"
    path.write_text(dump_yaml(cfg))
    assert load_config(path) == cfg


def test_unknown_key_names_nearest(tmp_path):
    with pytest.raises(ConfigError, match=r"train.stpes.*did you mean 'train.steps'"):
        load_config(None, ["train.stpes=3"])
    # the hint is a key --set takes: a bare 'runs_dir' is no key at the top level
    with pytest.raises(ConfigError, match=r"did you mean 'train.runs_dir'\?"):
        load_config(None, ["train.out_dir=x"])
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  embed_dimm: 3\n")
    with pytest.raises(ConfigError, match=r"bad.yaml.*model.embed_dimm.*embed_dim"):
        load_config(path)


@pytest.mark.parametrize(
    "override,match",
    [
        ("train.steps=abc", "expected int"),
        ("train.steps=1.5", "expected int"),
        ("train.channels_last=maybe", "true/false"),
        ("model.channels=3", "expected a list"),
        ("nokey", "key=value"),
    ],
)
def test_bad_values(override, match):
    with pytest.raises(ConfigError, match=match):
        load_config(None, [override])


def test_yaml_is_safe_loaded(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("name: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)


def test_a_yaml_error_names_its_line(tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text("name: x\ntrain:\n  steps: [3\n  lr: 0.1\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value).startswith(f"{path}: not valid YAML (") and ", line 4)" in str(err.value)


def test_shipped_configs_load():
    from pathlib import Path

    configs = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))
    assert configs, "configs/ is empty"
    for path in configs:
        cfg = load_config(path)
        assert isinstance(cfg, Config) and cfg.name == path.stem


def test_a_section_given_as_a_mapping_changes_only_the_keys_it_names():
    base = load_config(CONFIGS / "avdigits-contrastive.yaml")
    cfg = load_config(
        CONFIGS / "avdigits-contrastive.yaml", ["model.audio={n_mels: 64}", "train={steps: 10}"]
    )
    assert cfg.model.audio.n_mels == 64 and cfg.train.steps == 10
    assert (cfg.model.audio.n_fft, cfg.model.audio.hop_length) == (256, 80)  # as in the file
    assert cfg.train.max_minutes == base.train.max_minutes == 19
    assert cfg.train.lr == base.train.lr
    with pytest.raises(ConfigError, match="unknown config key 'model.audio.n_melz'"):
        load_config(None, ["model.audio={n_melz: 64}"])


@pytest.mark.parametrize("text", ["010", "0.10", "1_000", "12:30", "0x1F", "true"])
def test_a_text_setting_keeps_the_text_as_typed(text):
    cfg = load_config(None, [f"name={text}", f"data.root=data/{text}", f"data.root={text}"])
    assert cfg.name == text and cfg.data.root == text


def test_numbers_in_a_list_of_text_or_non_finite_floats_are_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"loss.domains: expected a string, got the number 7"):
        load_config(None, ["loss.domains=[007, 010]"])
    assert load_config(None, ["loss.domains=['007', '010']"]).loss.domains == ["007", "010"]
    path = tmp_path / "c.yaml"
    path.write_text("name: 010\n")  # YAML 1.1 reads 8
    with pytest.raises(ConfigError, match=r"name: expected a string, got the number 8 \(quote"):
        load_config(path)
    for item in ("loss.domain_adversary=.nan", "model.avol_scale_init=.inf"):
        with pytest.raises(ConfigError, match="must be a finite number"):
            load_config(None, [item])
