"""Node.js version ranges (npm's semver grammar) as sets of intervals, for choosing a line.

``NodeRange.parse(">=18 <21 || ^22.3")`` reads what ``engines.node``, ``.nvmrc`` and
``.node-version`` say: ``||`` alternatives of space-separated comparators (``<``, ``<=``,
``>``, ``>=``, ``=``, ``~``, ``^``, hyphen ranges, ``x``/``*`` wildcards, partial versions,
an optional ``v``). Each alternative becomes one interval of release versions, so a range
can answer both questions the toolchain choice asks: does this exact version satisfy it,
and does it admit any version of this major line. Prerelease tags are dropped (the image
offers releases only). Everything here is hostile input: length and comparator count are
bounded, and anything else raises :class:`RangeError`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

Version = tuple[int, int, int]

MAX_RANGE_CHARS = 256
MAX_COMPARATORS = 32
INFINITY: Version = (10**9, 0, 0)

_PART = r"\d{1,9}|[xX*]"
_PARTIAL = (rf"v?(?P<major>{_PART})(?:\.(?P<minor>{_PART}))?(?:\.(?P<patch>{_PART}))?"
            r"(?:-[0-9A-Za-z.-]{1,64})?(?:\+[0-9A-Za-z.-]{1,64})?")
_SIMPLE = re.compile(rf"(?P<op><=|>=|<|>|=|~>|~|\^)?{_PARTIAL}")
_OP_SPACE = re.compile(r"(<=|>=|<|>|=|~>|~|\^)\s+")
_HYPHEN = re.compile(r"\s+-\s+")


class RangeError(ValueError):
    """Not a version range npm would understand."""


@dataclass(frozen=True, slots=True)
class Interval:
    """Versions ``v`` with ``low <= v`` (``<`` unless ``low_in``) and ``v < high`` (``<=`` when
    ``high_in``)."""

    low: Version = (0, 0, 0)
    low_in: bool = True
    high: Version = INFINITY
    high_in: bool = False

    def contains(self, v: Version) -> bool:
        above = v >= self.low if self.low_in else v > self.low
        below = v <= self.high if self.high_in else v < self.high
        return above and below

    def meet(self, other: Interval) -> Interval:
        if (other.low, not other.low_in) > (self.low, not self.low_in):
            low, low_in = other.low, other.low_in
        else:
            low, low_in = self.low, self.low_in
        if (other.high, other.high_in) < (self.high, self.high_in):
            high, high_in = other.high, other.high_in
        else:
            high, high_in = self.high, self.high_in
        return Interval(low, low_in, high, high_in)

    @property
    def empty(self) -> bool:
        if self.low < self.high:
            return False
        return not (self.low == self.high and self.low_in and self.high_in)


@dataclass(frozen=True, slots=True)
class NodeRange:
    """A parsed range: the union of its intervals."""

    text: str
    intervals: tuple[Interval, ...]

    @classmethod
    def parse(cls, text: str) -> NodeRange:
        """The range ``text`` means; RangeError when it is not one."""
        if len(text) > MAX_RANGE_CHARS or "\0" in text:
            raise RangeError(f"a version range is at most {MAX_RANGE_CHARS} characters")
        alternatives = text.split("||")
        if sum(len(a.split()) for a in alternatives) > MAX_COMPARATORS:
            raise RangeError(f"a version range has at most {MAX_COMPARATORS} comparators")
        intervals = [_alternative(a.strip()) for a in alternatives]
        return cls(text=text.strip(), intervals=tuple(i for i in intervals if not i.empty))

    def contains(self, version: Version) -> bool:
        return any(i.contains(version) for i in self.intervals)

    def admits_line(self, major: int) -> bool:
        """Whether some ``major.x.y`` satisfies the range."""
        line = Interval((major, 0, 0), True, (major + 1, 0, 0), False)
        return any(not i.meet(line).empty for i in self.intervals)


def parse_version(text: str) -> Version:
    """``"20.11.1"`` or ``"v20.11.1"`` as a tuple; RangeError otherwise."""
    found = re.fullmatch(r"v?(\d{1,9})\.(\d{1,9})\.(\d{1,9})", text.strip())
    if found is None:
        raise RangeError(f"{text!r} is not a version")
    return int(found[1]), int(found[2]), int(found[3])


def _alternative(text: str) -> Interval:
    if not text:
        return Interval()
    hyphen = _HYPHEN.split(text)
    if len(hyphen) == 2:
        low, high = _partial(hyphen[0]), _partial(hyphen[1])
        return Interval(low=_floor(low)).meet(_at_most(high))
    if len(hyphen) > 2:
        raise RangeError(f"{text!r}: more than one hyphen range")
    result = Interval()
    for token in _OP_SPACE.sub(r"\1", text).split():
        found = _SIMPLE.fullmatch(token)
        if found is None:
            raise RangeError(f"{text!r} is not a version range")
        result = result.meet(_comparator(found["op"] or "=", _parts(found)))
    return result


Partial = tuple[int | None, int | None, int | None]


def _parts(found: re.Match[str]) -> Partial:
    values: list[int | None] = []
    for name in ("major", "minor", "patch"):
        raw = found[name]
        wild = raw is None or raw in ("x", "X", "*") or (values and values[-1] is None)
        values.append(None if wild else int(raw))
    return values[0], values[1], values[2]


def _partial(text: str) -> Partial:
    found = re.fullmatch(_PARTIAL, text.strip())
    if found is None:
        raise RangeError(f"{text!r} is not a version")
    return _parts(found)


def _floor(p: Partial) -> Version:
    return p[0] or 0, p[1] or 0, p[2] or 0


def _next(p: Partial) -> Version:
    """The first version past everything ``p`` (with wildcards) matches."""
    major, minor, patch = p
    if major is None:
        return INFINITY
    if minor is None:
        return major + 1, 0, 0
    if patch is None:
        return major, minor + 1, 0
    return major, minor, patch + 1


def _at_most(p: Partial) -> Interval:
    return Interval(high=_next(p), high_in=False)


def _comparator(op: str, p: Partial) -> Interval:
    major, minor, patch = p
    if op == "=":
        return Interval(low=_floor(p), high=_next(p))
    if op == ">=":
        return Interval(low=_floor(p))
    if op == ">":
        return Interval(low=_next(p)) if major is not None else Interval(high=(0, 0, 0))
    if op == "<":
        return Interval(high=_floor(p)) if major is not None else Interval(high=(0, 0, 0))
    if op == "<=":
        return _at_most(p)
    if op in ("~", "~>"):
        return Interval(low=_floor(p), high=_next((major, minor, None)))
    # caret: up to the next change of the first non-zero part given
    if major is None:
        return Interval()
    if major > 0 or minor is None:
        return Interval(low=_floor(p), high=(major + 1, 0, 0))
    if minor > 0 or patch is None:
        return Interval(low=_floor(p), high=(0, minor + 1, 0))
    return Interval(low=_floor(p), high=(0, 0, patch + 1))
