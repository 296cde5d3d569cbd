"""data.atomic: a write either completes and replaces the target, or leaves the old target and no leftovers."""

import json

import pytest

from data.atomic import atomic_directory, atomic_file, replace_directory, write_json


class Boom(Exception):
    pass


def tree(folder):
    """{relative path: bytes} of every file under ``folder`` (the folder's complete visible state)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_atomic_file_creates_and_replaces(tmp_path):
    target = tmp_path / "sub" / "value.txt"  # parent folder is missing on purpose
    with atomic_file(target) as tmp:
        assert tmp.parent == target.parent and tmp != target
        tmp.write_text("first")
        assert not target.exists()  # nothing visible before the block ends
    assert target.read_text() == "first"
    with atomic_file(target) as tmp:
        tmp.write_text("second")
        assert target.read_text() == "first"  # old content until the swap
    assert target.read_text() == "second"
    assert sorted(p.name for p in target.parent.iterdir()) == ["value.txt"]


def test_atomic_file_error_keeps_old_and_leaves_nothing(tmp_path):
    target = tmp_path / "value.txt"
    target.write_text("old")
    with pytest.raises(Boom), atomic_file(target) as tmp:
        tmp.write_text("half-written")
        raise Boom
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["value.txt"]


def test_atomic_file_suffix_ends_the_temp_name(tmp_path):
    np = pytest.importorskip("numpy")
    target = tmp_path / "a.npy"
    with atomic_file(target, suffix=".npy") as tmp:
        assert tmp.name.endswith(".npy")
        np.save(tmp, np.arange(5))  # np.save would append ".npy" to a name without it
    assert np.load(target).tolist() == [0, 1, 2, 3, 4]
    assert [p.name for p in tmp_path.iterdir()] == ["a.npy"]


def test_atomic_directory_creates_then_replaces_without_leftovers(tmp_path):
    target = tmp_path / "ckpt"
    with atomic_directory(target) as tmp:
        assert tmp.is_dir() and not any(tmp.iterdir())
        (tmp / "a.txt").write_text("1")
        (tmp / "nested").mkdir()
        (tmp / "nested" / "b.txt").write_text("2")
    assert tree(target) == {"a.txt": b"1", "nested/b.txt": b"2"}
    with atomic_directory(target) as tmp:
        (tmp / "c.txt").write_text("3")
        assert tree(target) == {"a.txt": b"1", "nested/b.txt": b"2"}  # old folder intact while writing
    assert tree(target) == {"c.txt": b"3"}  # replaced, not merged
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]  # no temp or .old folder left


def test_atomic_directory_error_keeps_old_and_leaves_nothing(tmp_path):
    target = tmp_path / "ckpt"
    target.mkdir()
    (target / "a.txt").write_text("old")
    with pytest.raises(Boom), atomic_directory(target) as tmp:
        (tmp / "a.txt").write_text("new")
        raise Boom
    assert tree(target) == {"a.txt": b"old"}
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]


def test_atomic_directory_error_without_old_target(tmp_path):
    target = tmp_path / "ckpt"
    with pytest.raises(Boom), atomic_directory(target) as tmp:
        (tmp / "a.txt").write_text("new")
        raise Boom
    assert not any(tmp_path.iterdir())


def test_atomic_directory_nested_replaces_its_own_empty_temp(tmp_path):
    # train_qa saves a model folder (itself atomic) straight into the outer temp folder
    target = tmp_path / "last"
    with atomic_directory(target) as outer:
        with atomic_directory(outer) as inner:
            (inner / "model.bin").write_bytes(b"w")
        (outer / "state.json").write_text("{}")
    assert tree(target) == {"model.bin": b"w", "state.json": b"{}"}
    assert [p.name for p in tmp_path.iterdir()] == ["last"]


def test_replace_directory_swaps_in_and_removes_old(tmp_path):
    src, dst = tmp_path / "new", tmp_path / "dst"
    for folder, content in ((src, "new"), (dst, "old")):
        folder.mkdir()
        (folder / "f.txt").write_text(content)
    assert replace_directory(src, dst) == dst
    assert tree(dst) == {"f.txt": b"new"}
    assert [p.name for p in tmp_path.iterdir()] == ["dst"]


def test_replace_directory_failed_move_restores_old(tmp_path):
    dst = tmp_path / "dst"
    dst.mkdir()
    (dst / "f.txt").write_text("old")
    with pytest.raises(FileNotFoundError):
        replace_directory(tmp_path / "missing", dst)
    assert tree(dst) == {"f.txt": b"old"}
    assert [p.name for p in tmp_path.iterdir()] == ["dst"]


def test_write_json_is_indented_creates_the_folder_and_keeps_the_old_file_on_failure(tmp_path):
    target = tmp_path / "results" / "r.json"
    assert write_json(target, {"a": [1, 2]}) == target
    assert target.read_text() == json.dumps({"a": [1, 2]}, indent=1) + "\n"
    write_json(target, {"b": 1}, indent=2)
    assert target.read_text() == '{\n  "b": 1\n}\n'
    with pytest.raises(TypeError):  # not serialisable: the old result stays whole, no temporary file is left
        write_json(target, {"c": object()})
    assert json.loads(target.read_text()) == {"b": 1}
    assert [p.name for p in target.parent.iterdir()] == ["r.json"]
