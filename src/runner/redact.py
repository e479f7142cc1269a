"""Secret redaction: one redactor for every artifact, log line, notification and error.

First every *configured* secret value (settings, secret-looking environment variables) is
replaced wherever it occurs, plain or URL-encoded. Then a few compiled passes find the
common token kinds: GitHub, OpenAI, AWS, Slack, JWTs, private key blocks, passwords in
URLs, ``Bearer``/``Authorization`` headers and ``password=...`` style assignments. Each
pass starts with a literal so the regex engine skips most of the text quickly (1 MB in a
few tens of milliseconds), and none tries a match at more than one place of a run it
reads to its end, so a hostile line (``eyJeyJeyJ…``, from the model) takes linear time.
Matches become markers such as ``[REDACTED:github-token]``; markers never match again, so
redacting twice changes nothing.

The patterns leave ordinary code alone: commit SHAs, UUIDs, base64 images,
``token = get_token()`` and ``password: str`` survive (see ``tests/fixtures_redaction``).

What tenants see (notifications, stage results, error records, problem responses) also
never shows the host's own paths (:func:`host_paths`): a path inside a working copy becomes
repository-relative (``<root>/<customer>/work/<project>/<execution>/src/app.py`` →
``src/app.py``), the workspace root ``<workspace>``, the service's checkout and data
directories ``<service>``, Aider's temporary directory ``<tool>``. The service's own logs
keep them (``default_redactor``): an operator needs to know where a file is.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from runner.settings import PROJECT_ROOT, Settings, get_settings

SECRET_ENV_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|API_?KEY|PRIVATE_?KEY")
"""Environment variables whose names match this hold secrets (when 8+ characters long)."""

_MIN_ENV_SECRET = 8
_MIN_SECRET = 6
_SECRET_WORDS = (
    ("password",), ("passwd",), ("passphrase",), ("secret",), ("token",), ("api", "key"),
    ("access", "key"), ("private", "key"), ("credential",), ("credentials",),
    ("authorization",),
)  # fmt: skip
# A quoted value runs to its closing quote; a bare one stops at code punctuation.
_VALUE = r"(?P<q>[\"'])?(?P<value>(?(q)[^\s\"'`]+|[^\s\"'`,;&<>()\[\]{}]+))"
# ``=``, ``:``, ``=>`` and a typed assignment ``: str =``.
_SEPARATOR = r"[\"']?[ \t]*(?::[ \t]*[A-Za-z_][\w.\[\]| ]*=(?!=)|:|=>|=(?!=))[ \t]*"
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
_ONE_TRAILING_DIGIT = re.compile(r"[A-Za-z_]+[0-9]")

Replacer = Callable[[re.Match[str]], str]


def marker(kind: str) -> str:
    """The text a secret of ``kind`` is replaced with."""
    return f"[REDACTED:{kind}]"


def looks_random(value: str, *, literal: bool = False) -> bool:
    """Whether a value next to a secret-ish word is a credential rather than code.

    Code puts identifiers, calls, types and templates there (``token = token``,
    ``password: str``, ``${DB_PASSWORD}``, ``self.token_v2``); credentials mix letters and
    digits. A ``literal`` (quoted) value is never code, so identifier shapes count there.
    """
    if len(value) < 6 or value.startswith(("[REDACTED", "$", "%")) or set(value) <= {"*"}:
        return False
    if not any(c.isdigit() for c in value) or not any(c.isalpha() for c in value):
        return False
    return literal or not (
        _IDENTIFIER.fullmatch(value) and ("." in value or _ONE_TRAILING_DIGIT.fullmatch(value))
    )


def _word_variants(parts: tuple[str, ...]) -> set[str]:
    """``api_key``, ``API-KEY``, ``ApiKey``, ``apiKey``...: the spellings code uses."""
    out: set[str] = set()
    for sep in ("_", "-", ""):
        out.add(sep.join(parts))
        out.add(sep.join(parts).upper())
        out.add(sep.join(p.capitalize() for p in parts))
        out.add(parts[0] + sep.join(p.capitalize() for p in parts[1:]))
    return out


def _trie_regex(words: Iterable[str]) -> str:
    """An alternation of ``words`` factored as a trie (much faster than a flat one)."""
    trie: dict[str, Any] = {}
    for word in words:
        node = trie
        for ch in word:
            node = node.setdefault(ch, {})
        node[""] = {}

    def emit(node: dict[str, Any]) -> str:
        alts = [re.escape(ch) + emit(child) for ch, child in sorted(node.items()) if ch]
        if not alts:
            return ""
        body = "(?:" + "|".join(alts) + ")"
        return body + "?" if "" in node else body

    return emit(trie)


def _bounded(match: re.Match[str]) -> bool:
    """The match does not start in the middle of a word (``\\b`` without slowing the scan)."""
    start = match.start()
    return start == 0 or not (match.string[start - 1].isalnum() or match.string[start - 1] == "_")


def _whole(kind: str, check: Callable[[str], bool] | None = None) -> Replacer:
    def replace(match: re.Match[str]) -> str:
        text = match.group(0)
        if not _bounded(match) or (check is not None and not check(text)):
            return text
        return marker(kind)

    return replace


def _openai_body(text: str) -> bool:
    """Real keys are random: a kebab-case name such as ``sk-learn-...`` is not one."""
    body = text[3:]
    return any(c.isdigit() for c in body) and any(c.isalpha() for c in body)


def _url_credentials(match: re.Match[str]) -> str:
    user, password = match.group("user"), match.group("pw")
    if password is not None:
        return f"://{user}:***@"
    return "://***@" if looks_random(user) else match.group(0)


def _keep_head(kind: str, check: Callable[[str], bool]) -> Replacer:
    def replace(match: re.Match[str]) -> str:
        value = match.group("value")
        if not check(value):
            return match.group(0)
        return match.group(0)[: match.start("value") - match.start()] + marker(kind)

    return replace


def _assignment(match: re.Match[str]) -> str:
    word = match.group("word").lower()
    value = match.group("value")
    literal = match.group("q") is not None
    if word == "authorization":
        ok = looks_random(value, literal=literal) or (
            len(value) >= 8 and any(c in value for c in "=+/")
        )
        kind = "authorization"
    else:
        ok, kind = looks_random(value, literal=literal), "secret"
    if not ok:
        return match.group(0)
    return match.group(0)[: match.start("value") - match.start()] + marker(kind)


# A token that runs on over its characters starts only where a run of them starts (the
# lookbehind after the literal keeps the literal first, which the engine searches fast):
# tried at every ``eyJ`` of a model's ``eyJeyJeyJ…`` line, each attempt read to the end of
# the run, and 1 MB took minutes. A token glued to a word is no token anyway (``_bounded``);
# one after a dash (``session-eyJ…``) is, and is tried with a first part that stops at the
# next dash, so ``-eyJ-eyJ…`` stays linear too.
_JWT = re.compile(r"eyJ(?:(?<![A-Za-z0-9_-]eyJ)[A-Za-z0-9_-]{8,}|(?<=-eyJ)[A-Za-z0-9_]{8,})"
                  r"\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*")
_GITHUB = re.compile(r"g(?<![A-Za-z0-9_]g)(?:h[opusr]_|ithub_pat_)[A-Za-z0-9_]{30,255}\b")
_WORDS = _trie_regex(set().union(*map(_word_variants, _SECRET_WORDS)))
_SCHEME = r"(?:(?:Basic|basic|BASIC|Token|token|TOKEN|Bearer|bearer|BEARER)[ \t]+)?"

# (pattern, replacer, triggers): a pass runs only when one of its triggers is in the text.
_PASSES: tuple[tuple[re.Pattern[str], Replacer, tuple[str, ...]], ...] = (
    (
        re.compile(
            r"-----BEGIN[ A-Z0-9]*PRIVATE KEY(?: BLOCK)?-----[\s\S]*?"
            r"(?:-----END[ A-Z0-9]*PRIVATE KEY(?: BLOCK)?-----|\Z)"
        ),
        _whole("private-key"),
        ("-----BEGIN",),
    ),
    (
        _GITHUB,
        _whole("github-token"),
        ("gh", "github_pat_"),
    ),
    (
        re.compile(r"sk-(?:proj-|svcacct-|admin-|ant-)?[A-Za-z0-9_-]{20,}"),
        _whole("openai-key", _openai_body),
        ("sk-",),
    ),
    (
        re.compile(r"A(?:KIA|SIA|BIA|CCA)[A-Z0-9]{16}\b"),
        _whole("aws-access-key"),
        ("AKIA", "ASIA", "ABIA", "ACCA"),
    ),
    (re.compile(r"xox[abposre]-[A-Za-z0-9-]{10,}"), _whole("slack-token"), ("xox",)),
    (_JWT, _whole("jwt"), ("eyJ",)),
    (
        re.compile(r"://(?P<user>[^\s:/?#@\"'<>]*)(?::(?P<pw>[^\s/?#@\"'<>]+))?@"),
        _url_credentials,
        ("://",),
    ),
    (
        re.compile(r"(?:Bearer|bearer|BEARER)[ \t]+(?P<value>[A-Za-z0-9._~+/=-]{8,})"),
        _keep_head("bearer", looks_random),
        ("earer", "EARER"),
    ),
    (
        re.compile(rf"(?P<word>{_WORDS})(?:[_-]?(?:key|KEY|Key))?{_SEPARATOR}{_SCHEME}{_VALUE}"),
        _assignment,
        (),
    ),
)


PathRule = tuple[str, str, str]
"""``(literal prefix, regex, replacement)``: where the literal occurs, the regex is replaced."""
_PATH_END = r"(?=$|[/\s'\"`:,;)\]}>])"
"""A path prefix ends at a separator (``/work/main`` must not match ``/work/mainline``)."""
_ID = r"[A-Za-z0-9_-]+"


class Redactor:
    """Replaces secrets (and, given ``paths``, host paths) in text and in JSON-like values.
    Immutable and thread-safe."""

    def __init__(
        self, secrets: Iterable[str] = (), paths: Iterable[PathRule] = (), *, trusted: str = ""
    ) -> None:
        variants: set[str] = set()
        for secret in secrets:
            if secret and len(secret) >= _MIN_SECRET:
                variants.update((secret, quote(secret, safe="")))
        self._secrets = frozenset(variants)
        ordered = sorted(self._secrets, key=lambda s: (-len(s), s))
        self._exact = re.compile("|".join(map(re.escape, ordered))) if ordered else None
        self._path_rules = tuple(dict.fromkeys(paths))
        self._paths = [(literal, re.compile(pattern), replacement)
                       for literal, pattern, replacement in self._path_rules]
        self._trusted = trusted

    @property
    def secrets(self) -> frozenset[str]:
        """The configured secret values this redactor replaces wherever they occur."""
        return self._secrets

    def redact(self, text: str) -> str:
        """``text`` with every configured secret and every recognised token replaced."""
        if not text:
            return text
        if self._exact is not None:
            text = self._exact.sub(marker("secret"), text)
        for pattern, replace, triggers in _PASSES:
            if not triggers or any(t in text for t in triggers):
                text = pattern.sub(replace, text)
        for literal, path_pattern, replacement in self._paths:
            if literal in text:
                text = path_pattern.sub(replacement, text)
        return text

    __call__ = redact

    def redact_obj(self, obj: Any) -> Any:
        """A copy of a JSON-like value with every string redacted (dict keys are kept)."""
        if isinstance(obj, str):
            return self.redact(obj)
        if isinstance(obj, dict):
            return {key: self.redact_obj(value) for key, value in obj.items()}
        if isinstance(obj, list | tuple):
            return type(obj)(self.redact_obj(value) for value in obj)
        return obj

    def with_secrets(self, more: Iterable[str]) -> Redactor:
        """A new redactor that also replaces the values in ``more``."""
        return Redactor([*self._secrets, *more], self._path_rules, trusted=self._trusted)

    def with_paths(self, rules: Iterable[PathRule]) -> Redactor:
        """A new redactor that also hides host paths (see :func:`host_paths`)."""
        return Redactor(self._secrets, [*self._path_rules, *rules], trusted=self._trusted)

    def trusting(self, prefix: str) -> Redactor:
        """A new redactor whose line streams (:meth:`lines`) take a line starting with
        ``prefix`` for the tool's own: ``prefix`` must be a secret mark that only the tool's
        code prints (Aider's guard marks its usage and error reports so)."""
        return Redactor(self._secrets, self._path_rules, trusted=prefix)

    def lines(self) -> LineRedactor:
        """A redactor for one stream of lines (remembers an open private key block)."""
        return LineRedactor(self, trusted=self._trusted)


_KEY_BEGIN = re.compile(r"-----BEGIN[ A-Z0-9]*PRIVATE KEY(?: BLOCK)?-----")
_KEY_END = re.compile(r"-----END[ A-Z0-9]*PRIVATE KEY(?: BLOCK)?-----")


class LineRedactor:
    """Redacts a tool's output line by line, as it is printed.

    A private key block spans lines, so one line alone cannot show where it ends: after a
    line that leaves a ``BEGIN ... PRIVATE KEY`` open (its last ``BEGIN`` has no ``END``
    after it) every line is hidden until the ``END`` line.

    A line starting with ``trusted`` (a secret mark, see :meth:`Redactor.trusting`) is the
    tool's own report, not the model's text: it is redacted on its own, never hidden as part
    of a block the model left open (which hid every usage and error report after it).
    """

    def __init__(self, redactor: Redactor, *, trusted: str = "") -> None:
        self._redactor = redactor
        self._trusted = trusted
        self._in_key = False

    def __call__(self, line: str) -> str:
        """The redacted ``line`` (one line, without its newline)."""
        if self._trusted and line.startswith(self._trusted):
            return self._redactor.redact(line)
        hidden = ""
        if self._in_key:
            end = _KEY_END.search(line)
            if end is None:
                return marker("private-key")
            hidden, line = marker("private-key"), line[end.end() :]
        self._in_key = _leaves_key_open(line)
        return hidden + self._redactor.redact(line)


def _leaves_key_open(line: str) -> bool:
    """Whether ``line`` ends inside a private key block: its last ``BEGIN`` is not closed
    (a closed block before it, ``BEGIN…END and BEGIN``, does not close it)."""
    last = max(_KEY_BEGIN.finditer(line), key=lambda begin: begin.start(), default=None)
    return last is not None and _KEY_END.search(line, last.end()) is None


def secret_env_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """Values of environment variables whose names look secret and are 8+ characters."""
    env = os.environ if environ is None else environ
    return [
        value
        for name, value in env.items()
        if SECRET_ENV_NAME.search(name.upper()) and len(value) >= _MIN_ENV_SECRET
    ]


def default_redactor() -> Redactor:
    """The service's redactor: configured secrets plus secret-looking environment values."""
    return Redactor([*get_settings().secret_values(), *secret_env_values()])


def host_paths(settings: Settings | None = None) -> list[PathRule]:
    """Rules that hide the host's own directories in text a tenant reads.

    Inside a working copy a path becomes repository-relative (the working copy itself
    ``<working copy>``); anything else under the workspace root ``<workspace>``; the
    service's data directory and checkout ``<service>``; Aider's temporary directories
    ``<tool>``. Each directory is matched as configured and as resolved (links).
    """
    settings = settings or get_settings()
    rules: list[PathRule] = []
    workspace = settings.path(settings.workspace.root)
    for root in dict.fromkeys((str(workspace), str(workspace.resolve()))):
        copy = re.escape(root) + rf"/{_ID}/work/{_ID}/{_ID}"
        rules += [(root, copy + "/", ""), (root, copy + _PATH_END, "<working copy>"),
                  (root, re.escape(root) + _PATH_END, "<workspace>")]
    service = [settings.path(settings.stack.dir), PROJECT_ROOT]
    for directory in dict.fromkeys(str(d) for p in service for d in (p, p.resolve())):
        rules.append((directory, re.escape(directory) + _PATH_END, "<service>"))
    tmp = tempfile.gettempdir()
    for directory in dict.fromkeys((tmp, str(Path(tmp).resolve()))):
        rules.append((f"{directory}/devteam-aider-",
                      re.escape(directory) + r"/devteam-aider-[^/\s'\"`]+", "<tool>"))
    return [r for r in rules if len(r[0]) > 1]  # never "/" (a root directory hides nothing)


def tenant_redactor() -> Redactor:
    """:func:`default_redactor` that also hides the host's paths, for what tenants read
    (problem responses); the pipeline's ``Services.redactor`` is built the same way."""
    return default_redactor().with_paths(host_paths())
