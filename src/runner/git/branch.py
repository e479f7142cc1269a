"""Task branch names: ``task/<id with dots as dashes>-<kebab-case title>``.

The name is a pure function of the task id and title, so every stage (and every re-run
after a crash) finds the same branch again. Only lowercase ASCII letters, digits and single
dashes appear after ``task/``; accented letters are transliterated, everything else is
dropped; the part after ``task/`` is at most 60 characters, cut at a dash. An id too long
to fit is cut too, and a short hash of the whole id keeps distinct ids apart.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

PREFIX = "task/"
MAX_LENGTH = 60
"""Characters allowed after ``task/``."""

_NON_ALNUM = re.compile(r"[^a-z0-9]+")
_SPECIAL = str.maketrans({
    "ß": "ss", "ẞ": "ss", "æ": "ae", "Æ": "ae", "œ": "oe", "Œ": "oe", "ø": "o", "Ø": "o",
    "đ": "d", "Đ": "d", "ð": "d", "Ð": "d", "ł": "l", "Ł": "l", "þ": "th", "Þ": "th",
    "\u0131": "i", "ŀ": "l", "Ŀ": "l",
})


def slugify(text: str) -> str:
    """Lowercase ASCII kebab-case: ``"Écrire l'API (v2)"`` → ``"ecrire-l-api-v2"``."""
    decomposed = unicodedata.normalize("NFKD", text.translate(_SPECIAL))
    ascii_text = decomposed.encode("ascii", "ignore").decode("ascii").lower()
    return _NON_ALNUM.sub("-", ascii_text).strip("-")


def branch_name(task_id: str, title: str) -> str:
    """The branch of task ``task_id`` titled ``title`` (deterministic, a valid git ref).

    The id part is kept whole when it fits; the title is cut at the last dash that keeps
    the name within ``MAX_LENGTH``. An id with no ASCII letter or digit is replaced by a
    short hash of itself so distinct ids still give distinct names. An id part longer
    than ``MAX_LENGTH`` leaves no room for the title: it is cut at a dash and followed by
    a short hash of the whole id (ids that differ only past the cut would otherwise share
    a branch).
    """
    ident = slugify(task_id.replace(".", "-"))
    if not ident:
        ident = "id-" + _digest(task_id)
    elif len(ident) > MAX_LENGTH:
        digest = _digest(task_id)
        return f"{PREFIX}{_cut(ident, MAX_LENGTH - len(digest) - 1)}-{digest}"
    title_part = slugify(title)
    body = f"{ident}-{title_part}" if title_part else ident
    return PREFIX + _cut(body, MAX_LENGTH)


def _digest(task_id: str) -> str:
    return hashlib.sha256(task_id.encode("utf-8", "surrogatepass")).hexdigest()[:10]


def _cut(body: str, limit: int) -> str:
    if len(body) <= limit:
        return body
    head = body[: limit + 1]
    if head.endswith("-"):
        return head.rstrip("-")
    dash = head.rfind("-")
    if dash > 0:
        return head[:dash].rstrip("-")
    return body[:limit].rstrip("-")
