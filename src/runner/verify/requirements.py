"""Requirements of verification criteria: ``≥80%``, ``0 errors``, ``pass``, a path.

A task list or ``.devteam.toml`` says what a criterion must reach as a short text; this
module turns that text into a ``Requirement`` and checks a measured value against it.
Text it cannot read is a ``config`` error naming the text, never silently ignored.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from runner.errors import ConfigError

PASS_WORDS = frozenset({
    "pass", "passes", "passed", "passing", "exit 0", "exit code 0", "success", "succeeds",
    "ok", "true", "yes", "green", "all pass", "all passing",
})
_NO_ERRORS = frozenset({"no errors", "zero errors", "none", "no issues", "clean"})
_OPS: dict[str, str] = {
    "≥": ">=", ">=": ">=", "=>": ">=", "at least": ">=", "min": ">=", "minimum": ">=",
    "no less than": ">=", "≤": "<=", "<=": "<=", "=<": "<=", "at most": "<=", "max": "<=",
    "maximum": "<=", "no more than": "<=", ">": ">", "<": "<", "==": "==", "=": "==",
}
_NUMERIC = re.compile(
    r"(?P<op>≥|≤|>=|<=|=>|=<|==|=|>|<|at least|at most|no less than|no more than"
    r"|minimum|maximum|min|max)?\s*:?\s*(?P<num>\d+(?:\.\d+)?)\s*"
    r"(?P<unit>%|percent|errors?|issues?|warnings?|problems?)?",
    re.IGNORECASE,
)
_PATH = re.compile(r"[A-Za-z0-9_.@+-]+(?:/[A-Za-z0-9_.@+-]+)*/?")
_COMPARE: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt, "==": operator.eq,
}


@dataclass(frozen=True)
class Requirement:
    """What a criterion must reach: ``op`` is a comparison, ``"pass"`` or ``"path"``."""

    op: str
    value: float | str | None
    unit: str | None
    raw: str

    def __str__(self) -> str:
        return self.raw


def parse_requirement(text: str, *, default_op: str = ">=", path: bool = False) -> Requirement:
    """Read ``text`` into a Requirement; ConfigError when it is not one we understand.

    ``default_op`` applies to a bare number without a unit (``80`` for coverage means at
    least 80, ``0`` for type errors means at most 0); a ``%`` means at least, a count of
    errors means at most. With ``path`` (``doc.updated``) any path-like text is a path,
    even without a ``/`` or ``.`` (``CHANGELOG``, ``docs``); otherwise it needs one of them.
    """
    raw = str(text).strip()
    low = " ".join(raw.lower().strip("`'\"").split())
    if not low:
        raise ConfigError("empty requirement")
    if low in PASS_WORDS:
        return Requirement(op="pass", value=None, unit=None, raw=raw)
    if low in _NO_ERRORS:
        return Requirement(op="<=", value=0.0, unit="errors", raw=raw)
    numeric = _NUMERIC.fullmatch(low)
    if numeric:
        return _numeric(numeric, raw, default_op)
    candidate = raw.strip("`'\" ")
    looks_like_path = path or "/" in candidate or "." in candidate
    if (
        looks_like_path
        and _PATH.fullmatch(candidate)
        and ".." not in candidate.split("/")
        and candidate not in (".", "./")
    ):
        return Requirement(op="path", value=candidate.removeprefix("./"), unit=None, raw=raw)
    raise ConfigError(
        f"cannot understand the requirement {raw!r}: expected something like '≥80%', "
        "'0 errors', 'pass' or a file path"
    )


def check(requirement: Requirement, actual: object) -> bool:
    """Whether ``actual`` meets ``requirement``.

    ``pass``: ``actual`` is True or an exit code of 0. Comparisons: ``actual`` is a finite
    number (None, NaN and infinities never pass; an integer of any size is compared
    exactly, never converted to a float that could overflow). ``path``: ``actual`` is the
    list of changed paths; it passes when one of them is the path or lies under it (a
    directory requirement).
    """
    if requirement.op == "pass":
        if isinstance(actual, bool):
            return actual
        return isinstance(actual, int) and actual == 0
    if requirement.op == "path":
        if not isinstance(actual, Sequence) or isinstance(actual, str):
            return False
        return any(touches(str(p), str(requirement.value)) for p in actual)
    if isinstance(actual, bool) or not isinstance(actual, int | float):
        return False
    if isinstance(actual, float) and not math.isfinite(actual):
        return False
    assert isinstance(requirement.value, float)
    return _COMPARE[requirement.op](actual, requirement.value)


def touches(changed: str, required: str) -> bool:
    """Whether the changed path ``changed`` is ``required`` or inside that directory."""
    changed = changed.removeprefix("./")
    required = required.removeprefix("./").rstrip("/")
    return changed == required or changed.startswith(required + "/")


def _numeric(match: re.Match[str], raw: str, default_op: str) -> Requirement:
    value = float(match["num"])
    unit_text = (match["unit"] or "").lower()
    unit = "%" if unit_text in ("%", "percent") else ("errors" if unit_text else None)
    if match["op"]:
        op = _OPS[match["op"].lower()]
    elif unit == "%":
        op = ">="
    elif unit == "errors":
        op = "<="
    else:
        op = default_op
    if unit == "%" and value > 100:
        raise ConfigError(f"requirement {raw!r} asks for more than 100%")
    return Requirement(op=op, value=value, unit=unit, raw=raw)
