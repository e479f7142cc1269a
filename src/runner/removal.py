"""Removing a directory tree a repository shaped: iterative, link-safe, never stopping.

``shutil.rmtree`` recurses once per directory level (Python 3.11), so a repository whose
tree is 1,200 directories deep raised ``RecursionError`` from FINALIZE and from the reaper
(``ignore_errors`` does not cover it) and left its working copy behind. :func:`remove_tree`
walks with an explicit stack of open directories instead, so depth costs neither stack
frames nor path length:

- every operation is relative to an open directory (``dir_fd``), so no path is ever
  longer than one name, and links are removed, never followed;
- at most ``MAX_OPEN`` directories are open at once: a subtree deeper than that is first
  moved up to the top of the tree and removed from there;
- a permission problem is retried once after giving the owner access to the directory;
- whatever still cannot be removed is reported, and the walk goes on with the next entry.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import uuid
from dataclasses import dataclass, field
from pathlib import Path

MAX_OPEN = 128
"""Directories held open at once; deeper subtrees are moved up to the top first."""
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass
class _Frame:
    """An open directory, the names in it still to remove, and its name in its parent."""

    fd: int
    name: str
    names: list[str] = field(default_factory=list)


def remove_tree(path: Path | str) -> list[str]:
    """Delete ``path`` and everything under it; returns what could not be removed.

    No error is raised for anything below ``path`` (each problem is one line of the result,
    naming the entry relative to ``path``), and a missing ``path`` is no problem.
    """
    top = Path(path)
    problems: list[str] = []
    try:
        info = top.lstat()
    except FileNotFoundError:
        return problems
    except OSError as exc:
        return [f".: {exc.strerror or exc}"]
    if not stat.S_ISDIR(info.st_mode):
        with contextlib.suppress(FileNotFoundError):
            try:
                top.unlink()
            except OSError as exc:
                problems.append(f".: {exc.strerror or exc}")
        return problems
    try:
        root = _Frame(os.open(top, _DIR_FLAGS), ".")
        root.names = _names(root.fd)
    except OSError as exc:
        return [f".: {exc.strerror or exc}"]
    frames = [root]
    try:
        while frames:
            _step(frames, problems)
    finally:
        for frame in frames:
            os.close(frame.fd)
    try:
        top.rmdir()
    except FileNotFoundError:
        pass
    except OSError as exc:
        if exc.errno != errno.ENOTEMPTY:  # not empty: what is left was reported already
            problems.append(f".: {exc.strerror or exc}")
    return problems


def _names(fd: int) -> list[str]:
    """The names in the open directory ``fd``."""
    with os.scandir(fd) as entries:
        return [entry.name for entry in entries]


def _step(frames: list[_Frame], problems: list[str]) -> None:
    """Remove one entry of the innermost open directory, or close and remove it."""
    frame = frames[-1]
    if not frame.names:
        frames.pop()
        os.close(frame.fd)
        if frames:
            _rmdir(frames[-1], frame.name, frames, problems)
        return
    name = frame.names.pop()
    try:
        info = os.stat(name, dir_fd=frame.fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    except OSError as exc:
        problems.append(f"{_rel(frames, name)}: {exc.strerror or exc}")
        return
    if not stat.S_ISDIR(info.st_mode):
        _unlink(frame, name, frames, problems)
        return
    if len(frames) >= MAX_OPEN:
        _hoist(frames, name, problems)
        return
    opened = _open(frame, name, frames, problems)
    if opened is not None:
        frames.append(opened)


def _open(parent: _Frame, name: str, frames: list[_Frame], problems: list[str]) -> _Frame | None:
    for retry in (True, False):
        fd = -1
        try:
            fd = os.open(name, _DIR_FLAGS, dir_fd=parent.fd)
            return _Frame(fd, name, _names(fd))
        except FileNotFoundError:
            pass
        except PermissionError as exc:
            if fd >= 0:
                os.close(fd)
            if retry and _give_access(parent.fd, name):
                continue
            problems.append(f"{_rel(frames, name)}: {exc.strerror or exc}")
        except OSError as exc:
            problems.append(f"{_rel(frames, name)}: {exc.strerror or exc}")
        if fd >= 0:
            os.close(fd)
        return None
    return None


def _unlink(parent: _Frame, name: str, frames: list[_Frame], problems: list[str]) -> None:
    try:
        os.unlink(name, dir_fd=parent.fd)
    except FileNotFoundError:
        pass
    except OSError as exc:
        problems.append(f"{_rel(frames, name)}: {exc.strerror or exc}")


def _rmdir(parent: _Frame, name: str, frames: list[_Frame], problems: list[str]) -> None:
    try:
        os.rmdir(name, dir_fd=parent.fd)
    except FileNotFoundError:
        pass
    except OSError as exc:
        if exc.errno != errno.ENOTEMPTY:  # not empty: what is left was reported already
            problems.append(f"{_rel(frames, name)}: {exc.strerror or exc}")


def _hoist(frames: list[_Frame], name: str, problems: list[str]) -> None:
    """Move the directory ``name`` of the innermost frame up to the top of the tree, where
    the walk finds it again with few directories open."""
    moved = f".devteam-removing-{uuid.uuid4().hex}"
    try:
        os.rename(name, moved, src_dir_fd=frames[-1].fd, dst_dir_fd=frames[0].fd)
    except OSError as exc:
        problems.append(f"{_rel(frames, name)}: {exc.strerror or exc}")
        return
    frames[0].names.append(moved)


def _give_access(dir_fd: int, name: str) -> bool:
    """Give the owner full access to the directory ``name`` (something made it private)."""
    with contextlib.suppress(OSError):
        info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        mode = stat.S_IMODE(info.st_mode)
        if stat.S_ISDIR(info.st_mode) and mode & 0o700 != 0o700:
            os.chmod(name, mode | 0o700, dir_fd=dir_fd)
            return True
    return False


def _rel(frames: list[_Frame], name: str) -> str:
    """The entry's path relative to the tree's top (error texts never name the host's
    layout), shortened in the middle when long."""
    rel = "/".join([*(f.name for f in frames[1:]), name])
    return rel if len(rel) <= 300 else f"{rel[:150]}…{rel[-150:]}"
