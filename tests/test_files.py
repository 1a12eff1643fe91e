"""Files written whole or not at all."""

import os

import pytest

from mflangevin._files import replace_atomically


def test_the_new_content_replaces_the_old_and_nothing_else_is_left(tmp_path):
    path = tmp_path / "out.bin"
    path.write_bytes(b"old")
    with replace_atomically(path) as handle:
        handle.write(b"new")
        assert path.read_bytes() == b"old"  # untouched until the rename
    assert path.read_bytes() == b"new"
    assert os.listdir(tmp_path) == ["out.bin"]


def test_an_error_while_writing_keeps_the_old_file(tmp_path):
    path = tmp_path / "out.bin"
    path.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt), replace_atomically(str(path)) as handle:
        handle.write(b"part")
        raise KeyboardInterrupt
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["out.bin"]


def test_the_file_has_the_permissions_of_a_new_one(tmp_path):
    (tmp_path / "plain").write_bytes(b"")
    with replace_atomically(tmp_path / "atomic") as handle:
        handle.write(b"")
    assert os.stat(tmp_path / "atomic").st_mode == os.stat(tmp_path / "plain").st_mode
