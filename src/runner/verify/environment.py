"""Telling a failing check's environment apart from the code it checks.

A verification that fails because a third-party module is not installed, a command is
missing, a host cannot be reached or a disk is full cannot be fixed by another round of the
coding tool: the pipeline pauses instead, with :func:`environment_problem`'s sentence as the
headline. Only what is *clearly* environmental counts: a missing module that the repository
itself provides (``calc.stats`` in a repository with ``src/calc``) or a relative import is
the code's own failure, and so is anything this module does not recognise.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from runner.ports import CommandResult

_PY_MODULE = re.compile(r"ModuleNotFoundError: No module named '([^']+)'")
_NODE_MODULE = re.compile(
    r"(?:Cannot find module|Cannot find package|Failed to resolve import) ['\"]([^'\"]+)['\"]")
_COMMAND = re.compile(r"\b(?:sh|bash|dash): (?:line )?(?:\d+: )?([^\s:]+): (?:command )?not found")
_NETWORK = re.compile(
    r"getaddrinfo (?:EAI_AGAIN|ENOTFOUND)|Temporary failure in name resolution|"
    r"Could not resolve host|Name or service not known|Network is unreachable|"
    r"\[Errno -3\]|ENETUNREACH")
_DISK = re.compile(r"No space left on device|ENOSPC")


def project_modules(workdir: Path) -> set[str]:
    """Top-level names the repository itself provides (flat and ``src`` layouts)."""
    names: set[str] = set()
    for root in (workdir, workdir / "src"):
        if root.is_symlink():
            continue  # a link could point anywhere on the host
        try:
            entries = list(root.iterdir())
        except OSError:
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.suffix == ".py":
                names.add(entry.stem)
            elif entry.is_dir():
                names.add(entry.name)
    return names


def environment_problem(commands: Sequence[CommandResult], own: Iterable[str]) -> str | None:
    """Why the failed ``commands`` failed for environmental reasons, or None."""
    mine = set(own)
    for command in commands:
        if command.ok or command.cancelled or command.timed_out:
            continue
        reason = _reason(command, mine)
        if reason is not None:
            return reason
    return None


def _reason(command: CommandResult, own: set[str]) -> str | None:
    tail = command.output_tail
    missing = list(dict.fromkeys(
        m[1] for m in _PY_MODULE.finditer(tail) if m[1].split(".")[0] not in own))
    if missing:
        names = ", ".join(f"'{m}'" for m in missing)
        what = f"Python module {names} is" if len(missing) == 1 else f"Python modules {names} are"
        return (f"{what} not installed (`{command.command}`): declare it in "
                "requirements*.txt or pyproject.toml, or set [commands] setup in .devteam.toml")
    for match in _NODE_MODULE.finditer(tail):
        spec = match[1]
        if spec.startswith((".", "/", "node:")):
            continue
        top = spec.split("/")[0] if not spec.startswith("@") else "/".join(spec.split("/")[:2])
        if top not in own:
            return (f"Node package '{top}' is not installed (`{command.command}`): declare it "
                    "in package.json with a lockfile, or set [commands] setup in .devteam.toml")
    if command.exit_code == 127 or _COMMAND.search(tail):
        found = _COMMAND.search(tail)
        name = found[1] if found else (command.command.split() or ["?"])[0]
        return (f"command '{name}' is not available in the sandbox (`{command.command}`): "
                "install it in the setup stage ([commands] setup) or use one the image has")
    if _NETWORK.search(tail):
        return (f"`{command.command}` needed a network host that verification cannot reach "
                "(verification runs without network; install dependencies in setup)")
    if _DISK.search(tail):
        return f"`{command.command}` ran out of disk space (raise the project's quota)"
    return None
