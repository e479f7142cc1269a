"""remove_tree: trees a repository shaped go, however deep, without following a link and
without stopping at an entry it cannot remove."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.removal import MAX_OPEN, remove_tree


def nested(top: Path, depth: int, name: str = "d") -> Path:
    """``depth`` directories inside each other under ``top`` (made one level at a time,
    relative to the last, so the tree may be deeper than any absolute path can name)."""
    top.mkdir(parents=True)
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            os.mkdir(name, dir_fd=fd)
            inner = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = inner
        leaf = os.open("leaf.txt", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(leaf, b"bottom\n")
        os.close(leaf)
    finally:
        os.close(fd)
    return top


@pytest.fixture
def immutable() -> Iterator[list[Path]]:
    """Files made immutable (``chattr +i``: not even root may remove them) for the test."""
    made: list[Path] = []
    yield made
    for path in made:
        subprocess.run(["chattr", "-i", str(path)], check=False, capture_output=True)


def make_immutable(path: Path, made: list[Path]) -> None:
    if shutil.which("chattr") is None:
        pytest.skip("chattr is needed to make an entry that cannot be removed")
    done = subprocess.run(["chattr", "+i", str(path)], check=False, capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"chattr +i is not permitted here: {done.stderr.decode().strip()}")
    made.append(path)


def test_given_a_1200_deep_tree_when_shutil_fails_then_remove_tree_removes_it(tmp_path):
    # the attack: shutil.rmtree recurses per level, and ignore_errors does not cover it
    tree = nested(tmp_path / "copy", 1200)
    with pytest.raises(RecursionError):
        shutil.rmtree(tree, ignore_errors=True)

    assert remove_tree(tree) == []
    assert not tree.exists()


def test_given_a_tree_deeper_than_path_max_then_it_is_removed(tmp_path):
    # 1,500 levels of "ddd/": 6,000 bytes, more than any absolute path may have (4,096),
    # and more levels than MAX_OPEN directories may be open at once
    tree = nested(tmp_path / "copy", 1500, name="ddd")
    assert MAX_OPEN < 1500

    assert remove_tree(tree) == []
    assert not tree.exists()
    assert list(tmp_path.iterdir()) == []


def test_given_links_to_outside_then_the_links_go_and_their_targets_stay(tmp_path):
    outside = tmp_path / "outside"
    (outside / "dir").mkdir(parents=True)
    (outside / "dir" / "keep.txt").write_text("keep")
    (outside / "file.txt").write_text("keep")
    tree = tmp_path / "copy"
    (tree / "sub").mkdir(parents=True)
    (tree / "to-dir").symlink_to(outside / "dir")
    (tree / "sub" / "to-file").symlink_to(outside / "file.txt")
    (tree / "sub" / "dangling").symlink_to(tmp_path / "nowhere")

    assert remove_tree(tree) == []

    assert not tree.exists()
    assert (outside / "dir" / "keep.txt").read_text() == "keep"
    assert (outside / "file.txt").read_text() == "keep"


def test_given_private_directories_then_they_are_removed(tmp_path):
    tree = tmp_path / "copy"
    (tree / "a" / "b").mkdir(parents=True)
    (tree / "a" / "b" / "f.txt").write_text("x")
    (tree / "a" / "b").chmod(0o000)
    (tree / "a").chmod(0o500)

    assert remove_tree(tree) == []
    assert not tree.exists()


def test_given_a_missing_path_or_a_file_then_no_error(tmp_path):
    assert remove_tree(tmp_path / "missing") == []
    single = tmp_path / "single.txt"
    single.write_text("x")
    assert remove_tree(single) == []
    assert not single.exists()


def test_given_an_entry_that_cannot_be_removed_then_the_rest_goes_and_it_is_reported(
    tmp_path, immutable
):
    tree = tmp_path / "copy"
    (tree / "a").mkdir(parents=True)
    (tree / "z").mkdir()
    (tree / "a" / "stuck.txt").write_text("x")
    (tree / "a" / "other.txt").write_text("x")
    (tree / "z" / "more.txt").write_text("x")
    nested(tree / "deep", 1100)
    make_immutable(tree / "a" / "stuck.txt", immutable)

    problems = remove_tree(tree)

    # named relative to the tree (never the host's path), and nothing else was left
    assert problems == ["a/stuck.txt: Operation not permitted"]
    assert sorted(p.relative_to(tree).as_posix() for p in tree.rglob("*")) == [
        "a", "a/stuck.txt"]
