"""Every command that loads a checkpoint says, in one ``note:`` line on stderr, that a run folder
without ``best.pt`` (a run stopped before its first validation) is read from its ``last.pt``.

The library prints nothing (:func:`avssl.train.checkpoint.no_best_note`); a command loads a model
with :func:`avssl.cli_checkpoint.load_command_model`, which says it, or calls
:func:`avssl.cli_checkpoint.note_checkpoint` before it reads only a checkpoint's config; each
command has a case here: the loaders are stubs that record the path and stop the command, so a
case needs no model, no training and no decoding.
``tests/test_report.py::test_a_run_without_best_says_last_is_used`` runs ``evaluate.py avc`` on a
real run to the end.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from conftest import media_folder

from avssl import cli, cli_checkpoint

REPO = Path(__file__).resolve().parents[1]
NOTE = "no best.pt (the run stopped before its first validation?); last.pt used"


class _Loaded(Exception):
    """Raised by the stub loaders: the command got as far as loading its checkpoint."""


def _script(path: Path):
    """``main`` of a script outside the package (``benchmarks/*.py``, ``datasets/*/*.py``)."""
    spec = importlib.util.spec_from_file_location(f"note_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def _evaluate(argv: list[str]) -> int:
    import evaluate

    return evaluate.main(argv)


def _avdigits(argv: list[str]) -> int:
    return _script(REPO / "datasets" / "avdigits" / "benchmark.py")(argv)


def _query_classes(argv: list[str]) -> int:
    return _script(REPO / "benchmarks" / "query_classes.py")(argv)


def _cases(tmp: Path) -> dict[str, tuple]:
    """Case -> (entry point, its argv, the run folder it loads); the files are :func:`world`'s."""
    run, bench_run = tmp / "run", tmp / "bench" / "runs" / "seed0"
    ckpt = ["--checkpoint", str(run)]
    clip, index, media = str(tmp / "clip.mp4"), str(tmp / "index"), ["--inputs", str(tmp / "media")]
    classify = ["classify", "--dataset", "folder", "--root", str(tmp / "sounds"), *ckpt]
    # the benchmark's stages before its evaluations are stubs: the inputs are not read
    bench = ["--fsdd", str(tmp), "--mnist-images", clip, "--mnist-labels", clip]
    bench += ["--out", str(tmp / "bench"), "--seeds", "0"]
    # --out naming a file and no --data: the checkpoint's config is read to refuse replacing
    # its manifest, before the model loads (avssl.eval.cli._check_not_manifest)
    out = ["--out", str(tmp / "old.json"), "--force"]
    return {
        "evaluate avc": (_evaluate, ["avc", *ckpt], run),
        "evaluate avc --out": (_evaluate, ["avc", *ckpt, *out], run),
        "evaluate retrieval": (_evaluate, ["retrieval", *ckpt], run),
        "evaluate localize": (_evaluate, ["localize", *ckpt], run),
        "evaluate classify model": (_evaluate, [*classify, "--features", "model"], run),
        "evaluate classify random": (_evaluate, [*classify, "--features", "random"], run),
        "evaluate classify logmel": (_evaluate, [*classify, "--features", "logmel"], run),
        "evaluate sync": (_evaluate, ["sync", *ckpt, "--video", clip], run),
        "avssl index": (cli.main, ["index", *ckpt, *media, "--out", str(tmp / "i")], run),
        "avssl query": (cli.main, ["query", "--index", index, *ckpt, "--audio", clip], run),
        "avssl embed": (cli.main, ["embed", *ckpt, *media, "--out", str(tmp / "e")], run),
        "avssl overlay": (cli.main, ["overlay", *ckpt, clip, "-o", str(tmp / "o.mp4")], run),
        "datasets/avdigits/benchmark.py": (_avdigits, bench, bench_run),
        "benchmarks/query_classes.py": (
            _query_classes,
            ["--index", index, *ckpt, "--manifest", str(tmp / "manifest.jsonl")],
            run,
        ),
    }


NAMES = list(_cases(Path("names-only")))


@pytest.fixture
def world(tmp_path, media_factory, monkeypatch):
    """:func:`_cases`' files, with run folders holding a ``last.pt`` and no ``best.pt``, and
    loaders that record the path asked for and raise :class:`_Loaded`; returns that record."""
    from avssl.tools import avdigits_benchmark, index, query_cli
    from avssl.train import checkpoint

    for run in (tmp_path / "run", tmp_path / "bench" / "runs" / "seed0"):
        run.mkdir(parents=True)
        (run / "last.pt").write_bytes(b"")  # never read: the loaders are stubs
    media_factory("clip.mp4", duration=0.5, size=(32, 32))
    media_folder(media_factory, {"clip.mp4": {"duration": 0.5, "size": (32, 32)}})
    for label in ("dog", "cat"):  # a --dataset folder of two classes (listed, never decoded)
        (tmp_path / "sounds" / label).mkdir(parents=True)
        (tmp_path / "sounds" / label / f"{label}.wav").write_bytes(b"")
    (tmp_path / "index").mkdir()
    (tmp_path / "old.json").write_text("{}")
    (tmp_path / "manifest.jsonl").write_text("")
    loaded = []

    def stop(path, *args, **kwargs):
        loaded.append(Path(path))
        raise _Loaded

    stubs = {}  # (name, id(stub)) -> (stub, the function it stands for under that name)

    def patch(module, name: str, stub) -> None:
        stubs[name, id(stub)] = (stub, getattr(module, name))
        monkeypatch.setattr(module, name, stub)

    patch(checkpoint, "load_model", stop)
    patch(checkpoint, "load_checkpoint", stop)
    # an index is opened before the checkpoint (query_cli imported load_index at its top)
    patch(query_cli, "load_index", lambda path: object())
    patch(index, "load_index", lambda path: object())
    # the benchmark's stages before its evaluations (its seed0 run is already there), and
    # the first thing it reads of that run
    for name in ("check_inputs", "check_settings", "prepare", "train"):
        patch(avdigits_benchmark, name, lambda *args: None)
    patch(avdigits_benchmark, "run_digest", stop)
    # noted once per process: each case is a process of its own
    monkeypatch.setattr(cli_checkpoint, "_NOTED", set())
    yield loaded
    # a module first imported during the case (resume_checks imports load_checkpoint at its
    # top, index_cli load_index) bound a stub: give it the real function, or later tests in
    # this process would load nothing (monkeypatch restores only the attributes it set)
    for module in list(sys.modules.values()):
        try:
            attributes = list(vars(module).items())
        except TypeError:  # no __dict__
            continue
        for name, value in attributes:
            if (name, id(value)) in stubs and stubs[name, id(value)][0] is value:
                setattr(module, name, stubs[name, id(value)][1])


@pytest.mark.parametrize("name", NAMES)
def test_a_run_without_best_is_noted_before_it_loads(world, tmp_path, name, capsys):
    entry, argv, run = _cases(tmp_path)[name]
    capsys.readouterr()
    with pytest.raises(_Loaded):
        entry(argv)
    err = capsys.readouterr().err
    assert world == [run], err  # it stopped at loading the run folder, not before
    assert err.splitlines().count(f"note: {run}: {NOTE}") == 1, err
    assert err.count(NOTE) == 1, err
