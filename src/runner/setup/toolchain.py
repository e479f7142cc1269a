"""Which Node.js line and which Python a project runs on, chosen from what the image offers.

The sandbox image offers several Node.js major lines side by side (``/opt/node/<major>``)
and Python interpreters, and says which in its labels (``devteam.toolchain.*``, written by
``containers/base/build.sh``; read with :meth:`Offered.from_labels`). A project asks:

=====================  ===================================================================
Node.js                ``.nvmrc``, else ``.node-version`` (a version, ``20``, ``v20.11.1``,
                       ``lts/*``, ``lts/iron``, ``node``), else ``engines.node`` of
                       ``package.json`` (an npm semver range); none of them: the default,
                       the newest LTS line offered
Python                 ``.python-version`` (pyenv's ``3.12`` or ``3.12.1``) and
                       ``requires-python`` of ``pyproject.toml`` (a PEP 440 specifier); both
                       must hold
=====================  ===================================================================

The highest offered version that satisfies what was asked wins. Each line is offered at
one version, so a pin to a version the line has moved past (``.nvmrc`` ``20.11.1`` with
``20.20.2`` offered) falls back to that same major (Python: minor) line, and the record
says so. When nothing offered fits, :func:`choose` raises ``EnvironmentFailure`` naming
what was asked, where, and what is offered: a person changes the project or the image.

Only ecosystems the project uses are chosen for (``package.json`` or a Node.js pin; a
Python manifest or pin). The chosen Node.js line's ``bin`` goes on ``PATH`` before the
image's own directories, after the project's ``.venv`` and ``node_modules/.bin``.
Everything read here is hostile input: the files come bounded by the caller, and a value
this module cannot read is reported, never guessed.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence

import msgspec
from packaging.specifiers import InvalidSpecifier, SpecifierSet

from runner.errors import EnvironmentFailure
from runner.setup.versions import NodeRange, RangeError, Version, parse_version

NODE_ROOT = "/opt/node"
LABEL_NODE = "devteam.toolchain.node"
LABEL_NODE_LTS = "devteam.toolchain.node-lts"
LABEL_NODE_DEFAULT = "devteam.toolchain.node-default"
LABEL_PYTHON = "devteam.toolchain.python"
NODE_PINS = (".nvmrc", ".node-version")
PYTHON_PIN = ".python-version"
PYTHON_MARKERS = ("pyproject.toml", "setup.py", "setup.cfg", PYTHON_PIN)
MAX_ASK_CHARS = 120
"""How much of what a project asked is echoed back (and looked at, for pins)."""

Reader = Callable[[str], bytes | None]


class Offered(msgspec.Struct, frozen=True, kw_only=True):
    """The toolchains an image offers (empty: it does not say, and nothing is chosen)."""

    node: tuple[str, ...] = ()
    """Full versions, one per major line, ascending."""
    node_lts: Mapping[int, str] = msgspec.field(default_factory=dict)
    """LTS major → codename (lower case)."""
    node_default: int | None = None
    python: tuple[str, ...] = ()

    @classmethod
    def from_labels(cls, labels: Mapping[str, str]) -> Offered:
        """What the image with these labels offers; malformed entries are left out."""
        node = sorted(
            (v for v in _split(labels.get(LABEL_NODE, "")) if _release(v) is not None),
            key=lambda v: _release(v) or (0, 0, 0),
        )
        lts: dict[int, str] = {}
        for item in _split(labels.get(LABEL_NODE_LTS, "")):
            major, _, name = item.partition("=")
            if major.isdigit():
                lts[int(major)] = name.strip().lower()
        majors = {_major(v) for v in node}
        default = labels.get(LABEL_NODE_DEFAULT, "").strip()
        chosen = int(default) if default.isdigit() and int(default) in majors else None
        if chosen is None and majors:
            chosen = max((m for m in majors if m in lts), default=max(majors))
        python = tuple(v for v in _split(labels.get(LABEL_PYTHON, ""))
                       if re.fullmatch(r"\d{1,3}\.\d{1,3}\.\d{1,3}", v))
        return cls(node=tuple(node), node_lts=lts, node_default=chosen, python=python)

    @property
    def declared(self) -> bool:
        return bool(self.node or self.python)


class Choice(msgspec.Struct, frozen=True, kw_only=True):
    """One chosen toolchain, as recorded in the SETUP stage's result and log."""

    tool: str
    """``node`` or ``python``."""
    version: str
    source: str
    """The file (and key) that asked, or ``default``."""
    asked: str = ""
    note: str = ""

    def describe(self) -> str:
        if self.source == "default":
            return f"toolchain: {self.tool} {self.version} ({self.note})"
        text = f"toolchain: {self.tool} {self.version} chosen from {self.source} ({self.asked!r})"
        return f"{text}; {self.note}" if self.note else text


class Toolchain(msgspec.Struct, frozen=True, kw_only=True):
    """What :func:`choose` decided: the choices and the directories to put on ``PATH``."""

    choices: list[Choice] = msgspec.field(default_factory=list)
    path: list[str] = msgspec.field(default_factory=list)

    def lines(self) -> list[str]:
        return [c.describe() for c in self.choices]


NONE = Toolchain()


def choose(names: Sequence[str] | set[str], read: Reader, offered: Offered) -> Toolchain:
    """The toolchain of a project whose top-level files are ``names`` (``read`` gives their
    bytes). Raises EnvironmentFailure when the project asks for what is not offered."""
    if not offered.declared:
        return NONE
    present = set(names)
    choices: list[Choice] = []
    path: list[str] = []
    if offered.node and present & {"package.json", *NODE_PINS}:
        node = _choose_node(present, read, offered)
        choices.append(node)
        path.append(f"{NODE_ROOT}/{_major(node.version)}/bin")
    wants_python = any(n in present for n in PYTHON_MARKERS) or any(
        n.startswith("requirements") and n.endswith(".txt") for n in present)
    if offered.python and wants_python:
        choices.append(_choose_python(present, read, offered))
    return Toolchain(choices=choices, path=path)


def with_path(env: Mapping[str, str], toolchain: Toolchain, system_path: str) -> dict[str, str]:
    """``env`` with the toolchain's directories on ``PATH`` before the image's own ones
    (``system_path`` when ``env`` sets none)."""
    if not toolchain.path:
        return dict(env)
    entries = env.get("PATH", system_path).split(":")
    at = next((i for i, e in enumerate(entries) if not e.startswith("/workspace")), len(entries))
    added = [p for p in toolchain.path if p not in entries]
    return {**env, "PATH": ":".join([*entries[:at], *added, *entries[at:]])}


# ---------------------------------------------------------------------------------- node
def _choose_node(present: set[str], read: Reader, offered: Offered) -> Choice:
    for pin in NODE_PINS:
        if pin in present:
            asked = _first_line(read(pin))
            return _node_pin(pin, asked, offered)
    engines = _engines_node(read("package.json")) if "package.json" in present else None
    if engines is not None:
        source = "package.json engines.node"
        try:
            wanted = NodeRange.parse(engines)
        except RangeError as exc:
            raise _unreadable("node", source, engines, offered.node, str(exc)) from exc
        return _node_in_range(source, engines, wanted, offered)
    default = _default_node(offered)
    what = "the newest LTS line offered" if _major(default.version) in offered.node_lts \
        else "the newest line offered"
    return msgspec.structs.replace(default, note=f"the default, {what}; the project asks for none")


def _node_pin(source: str, asked: str, offered: Offered) -> Choice:
    word = asked.lower()
    if word in ("", "system", "default"):
        return msgspec.structs.replace(_default_node(offered), source=source, asked=asked,
                                       note="the image's default line")
    if word in ("node", "stable", "latest", "current"):
        return Choice(tool="node", version=offered.node[-1], source=source, asked=asked,
                      note="the newest line offered")
    if word.startswith("lts/"):
        return _node_lts(source, asked, word.removeprefix("lts/"), offered)
    try:
        wanted = NodeRange.parse(asked)
    except RangeError as exc:
        raise _unreadable("node", source, asked, offered.node, str(exc)) from exc
    return _node_in_range(source, asked, wanted, offered)


def _node_lts(source: str, asked: str, name: str, offered: Offered) -> Choice:
    lines = sorted(m for m in offered.node_lts if any(_major(v) == m for v in offered.node))
    major: int | None = None
    if name == "*" and lines:
        major = lines[-1]
    elif re.fullmatch(r"-\d{1,2}", name) and int(name[1:]) < len(lines):
        major = lines[-1 - int(name[1:])]
    else:
        major = next((m for m in lines if offered.node_lts[m] == name), None)
    if major is None:
        lts = ", ".join(f"{m} ({offered.node_lts[m]})" for m in lines) or "none"
        raise _not_offered("node", source, asked, offered.node, f"LTS lines offered: {lts}")
    version = next(v for v in offered.node if _major(v) == major)
    return Choice(tool="node", version=version, source=source, asked=asked,
                  note=f"LTS line {major} ({offered.node_lts[major]})")


def _node_in_range(source: str, asked: str, wanted: NodeRange, offered: Offered) -> Choice:
    exact = [v for v in offered.node if wanted.contains(_release(v) or (0, 0, 0))]
    if exact:
        return Choice(tool="node", version=exact[-1], source=source, asked=asked)
    same_line = [v for v in offered.node if wanted.admits_line(_major(v))]
    if same_line:
        version = same_line[-1]
        return Choice(tool="node", version=version, source=source, asked=asked,
                      note=f"the {_major(version)} line is offered at {version} only")
    raise _not_offered("node", source, asked, offered.node)


def _default_node(offered: Offered) -> Choice:
    version = next((v for v in offered.node if _major(v) == offered.node_default),
                   offered.node[-1])
    return Choice(tool="node", version=version, source="default")


def _engines_node(raw: bytes | None) -> str | None:
    try:
        data = json.loads((raw or b"{}").decode("utf-8"))
    except (ValueError, RecursionError):
        return None  # npm reports a broken package.json
    engines = data.get("engines") if isinstance(data, dict) else None
    value = engines.get("node") if isinstance(engines, dict) else None
    return value.strip() if isinstance(value, str) and value.strip() else None


# -------------------------------------------------------------------------------- python
def _choose_python(present: set[str], read: Reader, offered: Offered) -> Choice:
    candidates = list(offered.python)
    asked: list[tuple[str, str]] = []
    note = ""
    if PYTHON_PIN in present:
        pins = _python_pins(read(PYTHON_PIN))
        if pins:
            asked.append((PYTHON_PIN, " ".join(pins)))
            candidates, note = _python_pinned(pins, candidates)
    requires = _requires_python(read("pyproject.toml")) if "pyproject.toml" in present else None
    if requires is not None:
        source = "pyproject.toml requires-python"
        asked.append((source, requires))
        try:
            spec = SpecifierSet(requires)
        except InvalidSpecifier as exc:
            raise _unreadable("python", source, requires, offered.python,
                              "not a PEP 440 version specifier") from exc
        candidates = [v for v in candidates if spec.contains(v, prereleases=True)]
    if not asked:
        return Choice(tool="python", version=offered.python[-1], source="default",
                      note="the project asks for no version")
    if not candidates:
        source = " and ".join(s for s, _ in asked)
        raise _not_offered("python", source, "; ".join(a for _, a in asked), offered.python)
    return Choice(tool="python", version=max(candidates, key=_release_key),
                  source=" and ".join(s for s, _ in asked),
                  asked="; ".join(a for _, a in asked), note=note)


def _python_pins(raw: bytes | None) -> list[str]:
    text = (raw or b"")[:4096].decode("utf-8", errors="replace")
    lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
    return [line[:MAX_ASK_CHARS] for line in lines if line][:8]


def _python_pinned(pins: list[str], offered: list[str]) -> tuple[list[str], str]:
    """The offered versions some pin names (pyenv: ``3.12`` is any 3.12.x), and a note
    when only the same minor line of an exact pin is offered."""
    exact: list[str] = []
    near: list[str] = []
    for pin in pins:
        if pin.lower() == "system":
            exact.extend(offered)
            continue
        found = re.fullmatch(r"(?:cpython-|python)?(\d{1,3})(?:\.(\d{1,3}))?(?:\.(\d{1,3}))?", pin)
        if found is None:
            continue  # pypy3.10, 3.13t, miniconda3: nothing the image offers
        parts = [int(p) for p in found.groups() if p is not None]
        for version in offered:
            numbers = [int(p) for p in version.split(".")]
            if numbers[: len(parts)] == parts:
                exact.append(version)
            elif len(parts) == 3 and numbers[:2] == parts[:2]:
                near.append(version)
    if exact:
        return sorted(set(exact), key=_release_key), ""
    if near:
        best = max(near, key=_release_key)
        return sorted(set(near), key=_release_key), \
            f"the {'.'.join(best.split('.')[:2])} line is offered at {best} only"
    return [], ""


def _requires_python(raw: bytes | None) -> str | None:
    try:
        data = tomllib.loads((raw or b"").decode("utf-8"))
    except (ValueError, RecursionError):
        return None  # pip reports a broken pyproject.toml
    project = data.get("project")
    value = project.get("requires-python") if isinstance(project, dict) else None
    return value.strip()[:MAX_ASK_CHARS * 2] if isinstance(value, str) and value.strip() else None


# ------------------------------------------------------------------------------- helpers
def _not_offered(tool: str, source: str, asked: str, offered: Sequence[str],
                 extra: str = "") -> EnvironmentFailure:
    shown = asked[:MAX_ASK_CHARS]
    listed = ", ".join(offered)
    name = "Node.js" if tool == "node" else "Python"
    verb = "ask" if " and " in source else "asks"
    message = (f"{source} {verb} for {name} {shown!r}, which the sandbox image does not offer "
               f"(it offers {name} {listed}{'; ' + extra if extra else ''}): let the project "
               f"accept one of these, or offer that version in the image "
               "(containers/base/build.sh)")
    return EnvironmentFailure(message, details={
        "tool": tool, "source": source, "asked": shown, "offered": list(offered)})


def _unreadable(tool: str, source: str, asked: str, offered: Sequence[str],
                why: str) -> EnvironmentFailure:
    shown = asked[:MAX_ASK_CHARS]
    name = "Node.js" if tool == "node" else "Python"
    return EnvironmentFailure(
        f"{source} asks for {name} {shown!r}, which is not a version or range this service "
        f"can read ({why}); the sandbox image offers {name} {', '.join(offered)}",
        details={"tool": tool, "source": source, "asked": shown, "offered": list(offered)})


def _first_line(raw: bytes | None) -> str:
    text = (raw or b"")[:4096].decode("utf-8", errors="replace")
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()  # noqa: PLW2901 - the comment goes
        if line:
            return line[:MAX_ASK_CHARS]
    return ""


def _split(value: str) -> list[str]:
    return [v.strip() for v in value[:4096].split(",") if v.strip()]


def _release(text: str) -> Version | None:
    try:
        return parse_version(text)
    except RangeError:
        return None


def _release_key(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split("."))


def _major(version: str) -> int:
    return int(version.split(".", 1)[0])
