"""The crash-safe writer every output goes through (avssl/atomic_write.py)."""

import os
import stat

import pytest

from avssl.atomic_write import replacing, temp_sibling, write_bytes, write_text


def test_write_replaces_whole_and_leaves_nothing_beside(tmp_path):
    path = tmp_path / "a.json"
    path.write_text("old")
    assert write_text(path, "né\n") == path
    assert path.read_bytes() == "né\n".encode()
    write_bytes(path, b"\x00\x01", sync=True)
    assert path.read_bytes() == b"\x00\x01"
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt()])
def test_failed_write_keeps_the_old_file_and_removes_the_partial_one(tmp_path, error):
    path = tmp_path / "m.jsonl"
    path.write_text("old\n")
    with pytest.raises(type(error)), replacing(path) as tmp:
        tmp.write_text("half")
        raise error
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["m.jsonl"]


def test_a_block_that_writes_nothing_fails_and_keeps_the_old_file(tmp_path):
    path = tmp_path / "x.txt"
    path.write_text("old")
    with pytest.raises(FileNotFoundError), replacing(path):
        pass
    assert path.read_text() == "old"


def test_temporary_name_is_hidden_per_process_and_can_keep_the_suffix(tmp_path):
    path = tmp_path / "clip.mp4"
    plain, suffixed = temp_sibling(path), temp_sibling(path, keep_suffix=True)
    assert plain.parent == suffixed.parent == tmp_path
    assert plain.name == f".clip.mp4.tmp{os.getpid()}"
    assert suffixed.name.startswith(".clip.tmp") and suffixed.suffix == ".mp4"


def test_make_parents(tmp_path):
    path = tmp_path / "a" / "b" / "page.html"
    with pytest.raises(FileNotFoundError):
        write_text(path, "x")
    assert not (tmp_path / "a").exists()
    write_text(path, "<p>", make_parents=True)
    assert path.read_text() == "<p>"


def test_a_symlink_is_replaced_not_written_through(tmp_path):
    # documented: replacing renames over the name given (evaluate --out, which writes through a
    # link on purpose, does not use it)
    target = tmp_path / "target.txt"
    target.write_text("kept")
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    write_text(link, "new")
    assert not link.is_symlink() and link.read_text() == "new"
    assert target.read_text() == "kept"


def test_an_error_names_the_file_asked_for_not_the_temporary_one(tmp_path):
    path = tmp_path / "prepare_report.json"
    path.mkdir()  # a folder in the way: the rename fails
    with pytest.raises(IsADirectoryError) as err:
        write_text(path, "{}")
    assert err.value.filename == str(path) and err.value.filename2 is None
    assert str(err.value).endswith(f": '{path}'")
    assert [p.name for p in tmp_path.iterdir()] == ["prepare_report.json"]


@pytest.mark.parametrize("mode", [0o444, 0o640, 0o600])
def test_a_replaced_file_keeps_its_permissions(tmp_path, mode):
    path = tmp_path / "config.yaml"
    path.write_text("old")
    path.chmod(mode)
    write_text(path, "new")
    assert path.read_text() == "new" and stat.S_IMODE(path.stat().st_mode) == mode


def test_a_new_file_takes_the_default_permissions(tmp_path):
    write_text(tmp_path / "a", "x")
    (tmp_path / "b").write_text("x")
    assert (tmp_path / "a").stat().st_mode == (tmp_path / "b").stat().st_mode


def test_a_symlink_that_cannot_be_followed_is_still_replaced(tmp_path):
    loop = tmp_path / "loop"
    loop.symlink_to(loop)  # stat() of it fails: too many levels of symbolic links
    write_text(loop, "x")
    assert not loop.is_symlink() and loop.read_text() == "x"
