"""The shared reader of files torch.save wrote tells every kind of bad file apart."""

import pytest
import torch

from avssl.torch_file import TorchFileError, load_torch_file


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "good.pt"
    torch.save({"x": torch.arange(6.0), "n": 3}, path)
    return path


@pytest.mark.parametrize("mmap", [False, True])
def test_a_good_file_loads(saved, mmap):
    state = load_torch_file(saved, mmap=mmap)
    assert state["n"] == 3 and torch.equal(state["x"], torch.arange(6.0))


def _kind(path) -> TorchFileError:
    with pytest.raises(TorchFileError) as err:
        load_torch_file(path)
    return err.value


def test_each_bad_file_has_its_kind(tmp_path, saved):
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "text.pt").write_text("not a tensor file\n")
    data = saved.read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    torch.save({"code": print}, tmp_path / "unsafe.pt")  # a function: loading it runs code
    assert _kind(tmp_path / "empty.pt").kind == "empty"
    assert _kind(tmp_path / "text.pt").kind == "not_torch"
    assert _kind(tmp_path / "unsafe.pt").kind == "unsafe"
    damaged = _kind(tmp_path / "cut.pt")
    assert damaged.kind == "damaged" and damaged.detail and "\n" not in damaged.detail
    unreadable = _kind(tmp_path)  # a folder cannot be opened as a file
    assert unreadable.kind == "unreadable" and unreadable.detail == "Is a directory"


def test_a_flipped_byte_in_the_pickle_is_damage_not_unsafe(tmp_path, saved):
    """weights_only refuses a damaged pickle with an UnpicklingError too (``Unsupported operand
    127``); only one naming a global (``Unsupported global: GLOBAL ...``) is unsafe."""
    import zipfile

    with zipfile.ZipFile(saved) as zf:
        pkl = zf.read(next(n for n in zf.namelist() if n.endswith("data.pkl")))
    data = bytearray(saved.read_bytes())
    at = data.find(pkl)  # stored uncompressed
    assert at > 0 and pkl[:2] == b"\x80\x02"
    data[at + 2] = 0x7F  # the opcode after PROTO
    (tmp_path / "flipped.pt").write_bytes(bytes(data))
    damaged = _kind(tmp_path / "flipped.pt")
    assert damaged.kind == "damaged" and "127" in damaged.detail, damaged
    torch.save({"code": print}, tmp_path / "unsafe.pt")
    assert _kind(tmp_path / "unsafe.pt").kind == "unsafe"
    # a well-formed protocol-4 pickle is refused for its FRAME opcode ("Unsupported operand
    # 149"), not a global: still unsafe, since the stream parses
    torch.save({"code": print}, tmp_path / "unsafe4.pt", pickle_protocol=4)
    assert _kind(tmp_path / "unsafe4.pt").kind == "unsafe"
