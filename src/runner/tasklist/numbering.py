"""Numbers for items the author left unnumbered: the first free one under their parent."""

from __future__ import annotations


class FreeNumbers:
    """The first ``n`` from a number on for which ``<prefix>.<n>`` is no id in ``used``.

    Each number found taken is remembered with the first one after it that may be free,
    and the runs walked are joined (ids are only ever added), so a run of written ids is
    walked once, not once per id generated next to it (by other parents with the same id,
    too).
    """

    def __init__(self, used: set[str]) -> None:
        self._used = used
        self._next: dict[str, dict[int, int]] = {}  # per prefix: taken number -> later one

    def first_free(self, prefix: str, number: int) -> int:
        following = self._next.setdefault(prefix, {})
        walked: list[int] = []
        while True:
            after = following.get(number)
            if after is None:
                if prefix + str(number) not in self._used:
                    break
                after = number + 1
            walked.append(number)
            number = after
        for taken in walked:
            following[taken] = number
        return number
