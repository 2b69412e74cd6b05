import pytest

from avssl.config import Config, config_from_dict, dump_yaml, load_config, to_dict
from avssl.errors import ConfigError


def test_defaults_round_trip(tmp_path):
    cfg = load_config(None, ["train.steps=7", "model.channels=[8, 16]", "data.root=/x/m.jsonl"])
    assert cfg.train.steps == 7 and cfg.model.channels == [8, 16] and cfg.data.root == "/x/m.jsonl"
    assert config_from_dict(to_dict(cfg)) == cfg
    path = tmp_path / "c.yaml"
    path.write_text(dump_yaml(cfg))
    assert load_config(path) == cfg


def test_unknown_key_names_nearest(tmp_path):
    with pytest.raises(ConfigError, match=r"train.stpes.*did you mean 'steps'"):
        load_config(None, ["train.stpes=3"])
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


def test_shipped_configs_load():
    from pathlib import Path

    configs = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))
    assert configs, "configs/ is empty"
    for path in configs:
        cfg = load_config(path)
        assert isinstance(cfg, Config) and cfg.name == path.stem
