"""``evaluate.py classify --group-regex`` that does not match the clips' names: refused when it
matches none of them (a typo left every clip its own group: ungrouped folds, and with
``--source-norm`` every source one clip whose features standardise to zeros), noted and counted
when it misses some; ``--source-norm`` refuses sources of a single clip."""

import numpy as np
from bad_media import last_json
from test_classify import make_folder, make_manifest

import evaluate
from avssl.eval.audio_sets import list_folder, list_manifest
from avssl.eval.probe import standardize_by_group


def _run(capsys, *args) -> tuple[int, str, str]:
    code = evaluate.main(["classify", *args, "--features", "logmel", "--no-progress"])
    out, err = capsys.readouterr()
    return code, out, err.strip()


def test_a_single_clip_source_standardises_to_zeros():
    """Why ``--source-norm`` must refuse them: the audit's run scored near chance."""
    x = np.random.default_rng(0).normal(size=(3, 4))
    assert not standardize_by_group(x, np.array(["a", "b", "c"])).any()


def test_listings_name_what_the_regex_does_not_match(tmp_path):
    root = make_folder(tmp_path / "f", recordings=2, takes=2)
    assert {it.unmatched for it in list_folder(root, r"^(.+)_take")} == {None}
    assert {it.unmatched for it in list_folder(root)} == {None}  # no regex: nothing to miss
    for regex in (r"zzz|", r"^[a-z]+-rec()"):  # an empty match names nothing
        assert None not in {it.unmatched for it in list_folder(root, regex)}, regex
    items = list_folder(root, r"^(low-rec\d)_")
    assert sum(it.unmatched is None for it in items) == 4
    assert {it.unmatched for it in items if it.label != "low"} == {
        it.path.name for it in items if it.label != "low"
    }
    path = make_manifest(tmp_path / "m", {"train": 2, "test": 2})
    items = list_manifest(path, r"^(spk0)_")
    assert [it.unmatched for it in items][:4] == [None, None, "spk1_train1_0", "spk1_train1_1"]
    assert items[2].source == "spk1_train1_0"  # the row's recording, as before


def test_a_folder_regex_matching_no_file_name_is_refused(tmp_path, capsys):
    root = make_folder(tmp_path / "f")
    args = ["--dataset", "folder", "--root", str(root), "--group-regex", "zzz"]
    for extra in ([], ["--source-norm"]):  # both exited 0 (the latter near chance)
        code, out, err = _run(capsys, *args, *extra)
        assert (code, out) == (2, "")
        assert err == (
            f"error: --group-regex: 'zzz' matches none of the 24 file names under {root} "
            "(e.g. high-rec0_take0.wav)"
        )


def test_a_manifest_regex_matching_no_row_id_is_refused(tmp_path, capsys):
    path = make_manifest(tmp_path / "m")
    code, _, err = _run(capsys, "--dataset", "manifest", "--root", str(path), "--group-regex", "z")
    assert code == 2
    assert err == (
        f"error: --group-regex: 'z' matches none of the 30 row ids in {path} "
        "(e.g. spk0_train0_0)"  # the 30 train and test rows: val takes no part
    )


def test_a_folder_regex_missing_some_files_is_noted_and_counted(tmp_path, capsys):
    root = make_folder(tmp_path / "f")
    args = ["--dataset", "folder", "--root", str(root), "--folds", "3"]
    code, out, err = _run(capsys, *args, "--group-regex", r"^(low-rec\d)_")
    assert code == 0
    assert err == (
        f"note: --group-regex '^(low-rec\\\\d)_' does not match 16 of the 24 readable file names "
        f"under {root} (e.g. high-rec0_take0.wav): they are each its own group"
    )
    assert last_json(out)["ungrouped_files"] == 16
    code, out, err = _run(capsys, *args, "--group-regex", r"^(.+)_take")
    assert code == 0 and "note:" not in err and last_json(out)["ungrouped_files"] == 0
    assert last_json(out)["group_regex"] == r"^(.+)_take"  # other groups: other folds
    code, out, _ = _run(capsys, *args)
    assert code == 0 and "ungrouped_files" not in last_json(out)  # no regex: nothing to count
    assert last_json(out)["group_regex"] is None


def test_source_norm_refuses_sources_of_a_single_clip(tmp_path, capsys):
    root = make_folder(tmp_path / "f")
    args = ["--dataset", "folder", "--root", str(root), "--folds", "3", "--source-norm"]
    code, out, err = _run(capsys, *args, "--group-regex", r"^(.+)\.wav")  # each file alone
    assert (code, out) == (2, "")
    assert err == (
        f"error: --source-norm: 24 of the 24 sources in {root} have a single clip "
        "(e.g. 'high-rec0_take0'): standardising a clip by its own mean and std zeroes its "
        "features; give a --group-regex whose sources hold several clips"
    )
    code, _, err = _run(capsys, *args, "--group-regex", r"^(low-rec\d)_")  # 16 files alone
    assert code == 2 and "error: --source-norm: 16 of the 20 sources" in err
    code, out, _ = _run(capsys, *args, "--group-regex", r"^(.+)_take")  # 2 takes a recording
    assert code == 0 and last_json(out)["source_norm"] is True


def test_source_norm_refuses_a_source_left_one_readable_clip(tmp_path, capsys):
    root = make_folder(tmp_path / "f")
    (root / "low" / "low-rec0_take1.wav").write_bytes(b"RIFF not really a wave file")
    args = ["--dataset", "folder", "--root", str(root), "--folds", "3", "--source-norm"]
    code, out, err = _run(capsys, *args, "--group-regex", r"^(.+)_take")
    assert (code, out) == (2, "")
    assert err.startswith("error: --source-norm: 1 of the 12 sources") and "'low-rec0'" in err


def test_a_regex_that_names_nothing_or_only_unreadable_files_is_refused(tmp_path, capsys):
    """An empty match (``zzz|``) named one source of every clip; a regex matching only a file
    that cannot be decoded left every scored clip ungrouped: both are a regex matching none."""
    root = make_folder(tmp_path / "f")
    args = ["--dataset", "folder", "--root", str(root)]
    code, _, err = _run(capsys, *args, "--group-regex", "zzz|")
    assert code == 2 and err.startswith("error: --group-regex: 'zzz|' matches none of the 24 ")
    (root / "high" / "x_bob_0.wav").write_bytes(b"not audio")
    code, _, err = _run(capsys, *args, "--group-regex", "^x_([a-z]+)_")
    assert code == 2
    assert err.splitlines()[-1] == (
        "error: --group-regex: '^x_([a-z]+)_' matches none of the 24 readable file names "
        f"under {root} (e.g. high-rec0_take0.wav)"
    )


def test_the_note_counts_the_readable_files_it_misses_as_the_json_does(tmp_path, capsys):
    """A file that is skipped is no group: the note named it among the files left each their
    own group (17 of 25) while the JSON's ``ungrouped_files`` counted 16."""
    root = make_folder(tmp_path / "f")
    (root / "high" / "junk.wav").write_bytes(b"not audio")
    args = ["--dataset", "folder", "--root", str(root), "--folds", "3"]
    code, out, err = _run(capsys, *args, "--group-regex", r"^(low-rec\d)_")
    assert code == 0
    result = last_json(out)
    assert result["n_skipped"] == 1 and result["ungrouped_files"] == 16
    assert err.splitlines()[-1] == (
        f"note: --group-regex '^(low-rec\\\\d)_' does not match 16 of the 24 readable file names "
        f"under {root} (e.g. high-rec0_take0.wav): they are each its own group"
    )


def test_source_norm_skips_an_unreadable_file_rather_than_refusing_its_source(tmp_path, capsys):
    """A stray unreadable file that the regex does not match was its own listed source of one
    clip: the whole run was refused for a file that is skipped anyway."""
    root = make_folder(tmp_path / "f")
    (root / "high" / "junk.wav").write_bytes(b"")
    args = ["--dataset", "folder", "--root", str(root), "--folds", "3", "--source-norm"]
    code, out, err = _run(capsys, *args, "--group-regex", r"^(.+)_take")
    assert code == 0, err
    result = last_json(out)
    assert result["source_norm"] is True and result["n_skipped"] == 1
    assert result["skipped"][0]["path"].endswith("junk.wav")


def test_source_norm_refuses_a_readable_single_clip_source_before_the_run_decodes(
    tmp_path, capsys, monkeypatch
):
    """The first readable clip of a one-clip source refuses the run: the others are not decoded
    (a regex missing files on ESC-50 with a network model decoded everything first)."""
    from avssl.eval import clip_features

    root = make_folder(tmp_path / "f")
    (root / "high" / "a_junk.wav").write_bytes(b"")  # listed first of the one-clip sources
    decoded, real = [], clip_features.extract

    def spy(paths, *args, **kwargs):
        decoded.extend(paths)
        return real(paths, *args, **kwargs)

    monkeypatch.setattr(clip_features, "extract", spy)
    args = ["--dataset", "folder", "--root", str(root), "--folds", "3", "--source-norm"]
    code, _, err = _run(capsys, *args, "--group-regex", r"^(low-rec\d)_")
    assert code == 2 and "error: --source-norm: 17 of the 21 sources" in err, err
    assert len(decoded) == 2 and decoded[0].name == "a_junk.wav", decoded  # then one readable
    assert f"(e.g. '{decoded[1].parent.name}/{decoded[1].name}')" in err
