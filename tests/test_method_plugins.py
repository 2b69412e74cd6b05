"""Methods installed by another package: entry points of the group ``avssl.methods``.

Each test makes an installed-looking distribution in ``tmp_path``: the package ``mine_plugin``
and a ``mine_plugin-0.1.dist-info`` folder holding ``METADATA`` and ``entry_points.txt``, with
``tmp_path`` on ``sys.path`` as site-packages is. ``Mine`` is AVE-Net with a marker in its
training statistics, so a run's ``metrics.jsonl`` shows that the plugin's class trained.

In-process, the packages' metadata is read from ``tmp_path`` alone: a plugin installed in the
environment (the README's ``mine``, say) changes neither the names listed nor which ``mine``
is found. The ``train.py`` subprocess sees the environment's, and is skipped beside a ``mine``.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from bad_media import last_json
from conftest import REPO, TINY

import evaluate
import train
from avssl.config import DataConfig, ModelConfig
from avssl.errors import ConfigError
from avssl.models import METHODS, AVModel, build_model, method_class
from avssl.models.l3 import L3Net
from avssl.models.plugins import GROUP

SMALL = {"channels": [8, 16], "embed_dim": 16}  # ModelConfig sizes of a quick build
PLUGIN = """
from avssl.models.avenet import AVENet


class Mine(AVENet):
    paper = "https://example.org/mine"

    def loss(self, batch):
        loss, stats = super().loss(batch)
        return loss, {**stats, "mine_plugin": 1.0}


def helper():
    return None


class NotAModel:
    pass
"""
ENTRY = "mine = mine_plugin.mine:Mine"
DIST = "(mine-plugin 0.1)"  # how a refusal names the distribution


def _dist(root: Path, name: str, entries: list[str]) -> Path:
    """A ``NAME-0.1.dist-info`` folder in ``root`` declaring ``entries`` of avssl.methods."""
    info = root / f"{name.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("\n".join(["[avssl.methods]", *entries, ""]))
    return info


@pytest.fixture
def install(tmp_path, monkeypatch):
    """``install(*entries)``: the package ``mine_plugin`` (modules ``mine``, and ``broken``,
    which fails to import) and its distribution declaring ``entries``, put on ``sys.path``.

    The environment's own ``avssl.methods`` names are ``install.environment``; from the fixture
    on, ``importlib.metadata`` finds the distributions of ``tmp_path`` alone (its
    ``entry_points()`` reads them through the module's ``distributions()``).
    """
    real = importlib.metadata.distributions
    environment = {ep.name for ep in importlib.metadata.entry_points(group=GROUP)}

    def here(**context):
        return real(**{"path": [str(tmp_path)], **context})

    monkeypatch.setattr(importlib.metadata, "distributions", here)
    package = tmp_path / "mine_plugin"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "mine.py").write_text(PLUGIN)
    (package / "broken.py").write_text("raise RuntimeError('no GPU named gpu9')\n")

    def make(*entries: str) -> Path:
        info = _dist(tmp_path, "mine-plugin", list(entries))
        monkeypatch.syspath_prepend(str(tmp_path))
        return info

    make.environment = environment
    yield make
    for name in [m for m in sys.modules if m.split(".")[0] == "mine_plugin"]:
        del sys.modules[name]  # the next test's package is another folder's


def _mine() -> type[AVModel]:
    return sys.modules["mine_plugin.mine"].Mine


def test_an_installed_method_is_found_and_built(install):
    assert method_class("mine") is AVModel  # not installed: the defaults
    with pytest.raises(ConfigError, match=r"unknown method 'mine' \(valid: [^)]*contrastive\)$"):
        build_model(ModelConfig(method="mine"), DataConfig())
    install(ENTRY)
    assert isinstance(build_model(ModelConfig(method="avenet", **SMALL), DataConfig()), AVModel)
    assert "mine_plugin.mine" not in sys.modules  # a built-in's build reads no plugin
    assert method_class("mine") is _mine()
    model = build_model(ModelConfig(method="mine", **SMALL), DataConfig())
    assert type(model) is _mine()
    with pytest.raises(ConfigError, match="views above 1 are for contrastive only"):
        build_model(ModelConfig(method="mine", audio_views=2), DataConfig())
    with pytest.raises(ConfigError) as err:
        build_model(ModelConfig(method="nope"), DataConfig())
    assert str(err.value).endswith("(valid: l3, avenet, avolnet, contrastive, mine)")


def test_an_installed_method_trains_and_evaluates(install, tiny_train_args, capsys):
    info = install(ENTRY)
    args = ["--config", str(REPO / "configs/avenet.yaml")]
    assert train.main([*args, *tiny_train_args("model.method=mine")]) == 0
    run = Path(last_json(capsys.readouterr().out)["run_dir"])
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["mine_plugin"] for r in rows if r["split"] == "train"] == [1.0] * 3
    base = ["--checkpoint", str(run), "--no-progress"]
    assert evaluate.main(["avc", *base]) == 0
    avc = last_json(capsys.readouterr().out)
    assert avc["n"] == 4 * 4 and 0.0 <= avc["accuracy"] <= 1.0

    # the checkpoint names the method; what is installed now decides, in one line
    (info / "entry_points.txt").write_text("[avssl.methods]\nmine = mine_plugin.mine:helper\n")
    assert evaluate.main(["avc", *base]) == 2
    entry = f"avssl.methods: mine = mine_plugin.mine:helper {DIST}"
    want = f"{entry}: a function, not a subclass of avssl.models.base.AVModel"
    assert capsys.readouterr().err == f"error: {run / 'best.pt'}: model.method: {want}\n"
    shutil.rmtree(info)  # uninstalled
    assert evaluate.main(["avc", *base]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {run / 'best.pt'}: model.method: unknown method 'mine' (valid: ")
    assert err.endswith("; register it (or install its package) before loading this checkpoint\n")
    assert err.count("\n") == 1 and ", mine" not in err


def test_train_py_finds_an_installed_method_out_of_process(install, tiny_cache, tmp_path):
    if "mine" in install.environment:  # the subprocess reads the environment's metadata
        pytest.skip(f"an installed package declares {GROUP}: mine")
    install(ENTRY)
    sets = [*TINY, "train.steps=2", "train.eval_every=2", "train.log_every=1"]
    sets += [f"train.runs_dir={tmp_path / 'runs'}", "model.method=mine"]
    args = [sys.executable, "train.py", *[a for s in sets for a in ("--set", s)], "--no-progress"]
    path = os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env = {**os.environ, "PYTHONPATH": path, "AVSSL_CACHE": str(tiny_cache), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    run = Path(last_json(done.stdout)["run_dir"])
    assert "method: mine" in (run / "config.yaml").read_text()
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r.get("mine_plugin") for r in rows if r["split"] == "train"] == [1.0, 1.0]


@pytest.mark.parametrize(
    "entry,reason",
    [
        ("mine = mine_plugin.gone:Mine",
         "cannot import it (ModuleNotFoundError: No module named 'mine_plugin.gone')"),
        ("mine = mine_plugin.broken:Mine", "cannot import it (RuntimeError: no GPU named gpu9)"),
        ("mine = mine_plugin.mine:Gone",
         "cannot import it (AttributeError: module 'mine_plugin.mine' has no attribute 'Gone')"),
        ("mine = mine_plugin.mine:helper",
         "a function, not a subclass of avssl.models.base.AVModel"),
        ("mine = mine_plugin.mine:NotAModel",
         "the class mine_plugin.mine.NotAModel, not a subclass of avssl.models.base.AVModel"),
        ("mine = mine_plugin.mine", "the value is not of the form module:Class"),
    ],
)  # fmt: skip
def test_a_bad_plugin_is_one_line_naming_its_entry_point(
    entry, reason, install, tiny_train_args, capsys
):
    install(entry)
    with pytest.raises(ConfigError) as err:
        method_class("mine")
    want = f"model.method: avssl.methods: {entry} {DIST}: {reason}"
    assert str(err.value) == want
    assert train.main(tiny_train_args("model.method=mine")) == 2
    assert capsys.readouterr().err == f"error: {want}\n"


def test_a_registered_name_is_never_taken_by_a_plugin(
    install, monkeypatch, tiny_train_args, capsys
):
    install("l3 = mine_plugin.broken:L3", "avenet = mine_plugin.mine:Mine", ENTRY)
    assert method_class("l3") is L3Net
    assert type(build_model(ModelConfig(method="l3", **SMALL), DataConfig())) is L3Net
    assert "mine_plugin.broken" not in sys.modules and "mine_plugin.mine" not in sys.modules
    # the refused entry points are named, with their distribution, where names are listed
    assert train.main(tiny_train_args("model.method=nope")) == 2
    ignored = [f"avssl.methods: avenet = mine_plugin.mine:Mine {DIST}",
               f"avssl.methods: l3 = mine_plugin.broken:L3 {DIST}"]  # fmt: skip
    assert capsys.readouterr().err == (
        "error: model.method: unknown method 'nope' (valid: l3, avenet, avolnet, contrastive, "
        f"mine; ignored, as a registered method's name: {'; '.join(ignored)})\n"
    )
    assert not [m for m in sys.modules if m.startswith("mine_plugin.")]  # listed, not imported
    # a method registered in-process keeps its name too
    monkeypatch.setitem(METHODS, "mine", L3Net)
    assert method_class("mine") is L3Net and "mine_plugin.mine" not in sys.modules


def test_broken_metadata_does_not_touch_registered_methods(install, tmp_path):
    install(ENTRY)
    _dist(tmp_path, "other", ["a line without an equals sign"])  # damaged, in another package
    assert type(build_model(ModelConfig(method="l3", **SMALL), DataConfig())) is L3Net
    with pytest.raises(ConfigError) as err:
        method_class("mine")
    assert str(err.value).startswith(
        "model.method: 'mine' is not a registered method, and the avssl.methods entry points of "
        "the installed packages cannot be read ("  # the parser's error: Python's version's
    )
    assert "\n" not in str(err.value)


def test_two_packages_declaring_one_name_are_refused(install, tmp_path):
    install(ENTRY)
    _dist(tmp_path, "other", ["mine = mine_plugin.mine:Mine", "helper = mine_plugin.mine:helper"])
    assert method_class("mine") is _mine()  # the same class twice is one plugin
    _dist(tmp_path, "third", ["mine = mine_plugin.mine:NotAModel"])
    with pytest.raises(ConfigError) as err:
        method_class("mine")
    listed = [f"avssl.methods: mine = mine_plugin.mine:Mine {DIST}",
              "avssl.methods: mine = mine_plugin.mine:Mine (other 0.1)",
              "avssl.methods: mine = mine_plugin.mine:NotAModel (third 0.1)"]  # fmt: skip
    assert str(err.value) == (
        f"model.method: 'mine' is declared by more than one entry point ({'; '.join(listed)}); "
        "uninstall all but one"
    )
