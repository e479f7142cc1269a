"""Repository URLs: what we accept, how we name them, and how git failures are reported.

A URL reaches us from a client (``repositoryUrl``), so it is checked before libgit2 sees it:
only ``https://``, ``ssh://``/``user@host:path``, ``http://`` and ``file://`` parse, a URL
carrying credentials (user information, a query string) is refused (credentials come only
from server-side configuration), and so is a path that a server could resolve somewhere
else (``..``, encoded slashes). Who may use which URL is ``policy``'s to decide. Every
message built here shows the URL without user information and with configured secrets
removed, because libgit2's own messages may quote what it was given; a failure talking to
a remote reads the same whatever the cause (closed port, no such repository, refused
credentials, not a git server), so a tenant cannot use it to map a network.
"""

from __future__ import annotations

import errno
import ipaddress
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pygit2
import structlog

from runner.errors import ConfigError, InfrastructureError, RunnerError, TransientError
from runner.settings import Settings

_SCP = re.compile(r"^(?:(?P<user>[A-Za-z0-9._~-]+)@)?(?P<host>[A-Za-z0-9.-]+):(?P<path>[^/].*)\Z")
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]*@")
_DEFAULT_PORTS = {"https": 443, "http": 80, "ssh": 22}
_SSH_SCHEMES = {"ssh", "git+ssh", "ssh+git"}
_HOST = re.compile(r"^[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?$")
_CONTROL = frozenset({"Cc", "Cf", "Zl", "Zp"})
"""Unicode categories no repository URL holds: C0 and C1 controls and DEL (``Cc``; ``\x9b``
starts a terminal escape), format characters (``Cf``: bidirectional overrides that show a
URL reversed, zero-width characters that hide one) and line or paragraph separators."""
_ENCODED = re.compile(r"%(?:2e|2f|5c|00)", re.IGNORECASE)
UNREACHABLE = (
    "repository not reachable (it does not exist, the credentials configured for this "
    "customer do not grant access to it, or its server did not answer as a git server)"
)
"""What a tenant reads for every failure talking to a remote, whatever its cause."""
log = structlog.get_logger("devteam.git")


class UrlCredentialsError(ConfigError):
    """The URL itself carries credentials (user information, a query string): refused with
    a 422 at the door and never stored, echoed or used."""


class CredentialsRejectedError(pygit2.GitError):
    """Raised inside a credentials callback when we have nothing (more) to offer.

    pygit2 re-raises it from the network call; being a GitError, it is translated (to a
    ``config`` error) wherever git errors are.
    """


@dataclass(frozen=True)
class RemoteUrl:
    """A parsed, policy-checked repository URL."""

    raw: str
    scheme: str
    """``https``, ``http``, ``ssh`` or ``file``."""
    host: str
    port: int | None
    path: str
    user: str | None = None
    """Only for SSH (``git@github.com:...``); HTTPS URLs never carry a user."""

    @property
    def git_url(self) -> str:
        """The URL handed to libgit2 (a ``file://`` URL names the resolved directory)."""
        return f"file://{self.path}" if self.scheme == "file" else self.raw

    @property
    def key(self) -> str:
        """A normalised form: two spellings of one repository give the same key."""
        if self.scheme == "file":
            return f"file://{self.path}"
        port = f":{self.port}" if self.port and self.port != _DEFAULT_PORTS[self.scheme] else ""
        path = self.path.strip("/").removesuffix(".git")
        user = f"{self.user}@" if self.user else ""
        return f"{self.scheme}://{user}{self.netloc_host}{port}/{path}"

    @property
    def netloc_host(self) -> str:
        """The host as a URL writes it (an IPv6 address in brackets)."""
        return f"[{self.host}]" if ":" in self.host else self.host

    @property
    def effective_port(self) -> int | None:
        """The port a connection goes to (the scheme's default when none is written)."""
        return self.port or _DEFAULT_PORTS.get(self.scheme)

    @property
    def display(self) -> str:
        """Safe to show: no user information, no query string."""
        if self.scheme == "file":
            return f"file://{self.path}"
        port = f":{self.port}" if self.port else ""
        return f"{self.scheme}://{self.netloc_host}{port}/{self.path.lstrip('/')}"


def parse_remote_url(url: str) -> RemoteUrl:
    """Parse ``url`` (syntax only, no policy). Raises ConfigError when it is not a git URL,
    carries credentials (user information, a query string), or has a path a server could
    resolve elsewhere (``.``/``..`` segments, encoded dots or slashes, empty segments)."""
    text = url.strip()
    if not text or any(unicodedata.category(c) in _CONTROL for c in text):
        raise ConfigError("repository URL is empty or contains control characters")
    if "?" in text:
        raise UrlCredentialsError(
            "repository URLs take no query string: credentials are configured on the "
            "server, never in the URL"
        )
    if "#" in text:
        raise ConfigError("repository URLs take no fragment (#)")
    if text.startswith("/"):
        return RemoteUrl(raw=text, scheme="file", host="", port=None, path=_resolve(text))
    if "://" not in text:
        scp = _SCP.match(text)
        if not scp:
            raise ConfigError("repository URL is not a URL git understands")
        return RemoteUrl(raw=text, scheme="ssh", host=_host(scp["host"]), port=None,
                         path=_path(scp["path"]), user=scp["user"])
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise ConfigError("repository URL is malformed") from None
    scheme = parts.scheme.lower()
    if scheme in _SSH_SCHEMES:
        if parts.password is not None:
            raise UrlCredentialsError("credentials in the repository URL are not accepted; "
                                      "they are configured on the server")
        return RemoteUrl(raw=text, scheme="ssh", host=_host(parts.hostname), port=port,
                         path=_path(parts.path), user=parts.username)
    if scheme in ("https", "http"):
        if parts.username is not None or parts.password is not None or "@" in parts.netloc:
            raise UrlCredentialsError(
                "credentials in the repository URL are not accepted; "
                "they are configured on the server"
            )
        return RemoteUrl(raw=text, scheme=scheme, host=_host(parts.hostname), port=port,
                         path=_path(parts.path))
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ConfigError("file:// repository URLs must name a local path")
        return RemoteUrl(raw=text, scheme="file", host="", port=None, path=_resolve(parts.path))
    raise ConfigError(f"repository URL scheme {scheme!r} is not supported")


def check_remote_url(url: str, settings: Settings) -> RemoteUrl:
    """Parse ``url`` and apply what holds for every customer (``file://`` only under the
    allowed roots); ConfigError says why it is refused. Which network URLs a customer may
    use, and where they may lead, is ``policy.RepositoryPolicy``'s to decide."""
    remote = parse_remote_url(url)
    if remote.scheme == "file":
        roots = allowed_file_roots(settings)
        if not roots:
            raise ConfigError("file:// repositories are not allowed on this server")
        if not any(Path(remote.path).is_relative_to(root) for root in roots):
            raise ConfigError(f"{remote.display} is outside the allowed file roots")
    return remote


def allowed_file_roots(settings: Settings) -> list[Path]:
    """The resolved directories ``file://`` repositories may live under."""
    raw = settings.workspace.allowed_file_roots
    return [Path(part).resolve() for part in raw.split(":") if part.strip()]


def scrub(text: str, secrets: Sequence[str] = ()) -> str:
    """``text`` without URL user information and without any of ``secrets``."""
    text = _USERINFO.sub(r"\g<scheme>[REDACTED]@", text)
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, "[REDACTED]")
    return text


def translate_git_error(
    exc: BaseException,
    action: str,
    remote: RemoteUrl | None = None,
    secrets: Sequence[str] = (),
    *,
    network: bool = False,
) -> RunnerError:
    """Turn a pygit2/OS failure of ``action`` into a classified RunnerError.

    Authentication failures and missing repositories are ``config`` (a person must fix the
    settings), network failures ``transient``, local I/O trouble ``infrastructure``. When
    ``network`` (``action`` talked to a remote other than ``file://``), the message is
    ``UNREACHABLE`` whatever libgit2 said, so a tenant cannot tell a closed port from an
    open one, a missing repository from a refused credential, or a git server from
    anything else; libgit2's own words go to the service log only.
    """
    where = f" ({remote.display})" if remote else ""
    raw = scrub(str(exc), secrets)
    details = {"action": action, "git_message": raw[:500]}
    if remote:
        details["repository"] = remote.display
    if isinstance(exc, OSError) and not isinstance(exc, pygit2.GitError):
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return InfrastructureError(f"{action}: no space left on device", details=details)
        return InfrastructureError(f"{action}: {raw}", details=details)
    low = raw.lower()
    if any(m in low for m in _CONTENT_MARKERS):
        # What the repository holds, not our machinery: the same error on every retry.
        return ConfigError(f"{action}{where}: the repository's content cannot be used: {raw}",
                           details=details)
    if network and remote is not None and remote.scheme != "file":
        refused = isinstance(exc, CredentialsRejectedError) or any(
            m in low for m in _AUTH_MARKERS + _MISSING_MARKERS)
        kind = ConfigError if refused else TransientError
        log.warning("git.remote_failed", action=action, repository=remote.display,
                    classification=str(kind.classification), git_message=raw[:500])
        return kind(f"{action}: {UNREACHABLE}",
                    details={"action": action, "repository": remote.display})
    if isinstance(exc, CredentialsRejectedError):
        return ConfigError(f"{action}{where}: authentication failed ({exc})", details=details)
    if any(m in low for m in _AUTH_MARKERS):
        return ConfigError(f"{action}{where}: authentication failed; check the server-side "
                           "git credentials", details=details)
    if any(m in low for m in _MISSING_MARKERS):
        return ConfigError(f"{action}{where}: repository not found", details=details)
    if any(m in low for m in _NETWORK_MARKERS):
        return TransientError(f"{action}{where}: network error: {raw}", details=details)
    if "lock" in low:
        return TransientError(f"{action}: repository is locked: {raw}", details=details)
    return InfrastructureError(f"{action}{where}: {raw}", details=details)


_CONTENT_MARKERS = (
    "submodule", ".gitmodules", "invalid path", "path too long", "path is too long",
    "nesting too deep",
)
"""libgit2 refusing what a repository holds: a ``.gitmodules`` it will not read (``update =
!command``), a path it will not check out (``.git`` inside, a name too long), a tree
nested deeper than it walks (100 levels)."""
_AUTH_MARKERS = (
    "authentication", "status code: 401", "status code: 403", "credentials",
    "permission denied", "failed to authenticate", "invalid username",
)
_MISSING_MARKERS = (
    "status code: 404", "not found", "could not find repository", "failed to resolve path",
    "does not appear to be a git repository", "no such file or directory",
)
_NETWORK_MARKERS = (
    "failed to connect", "connection refused", "timed out", "resolve", "connection reset",
    "ssl", "tls", "network", "early eof", "unexpected eof", "failed to send", "failed to recv",
    "failed to receive", "broken pipe", "unreachable", "status code: 5",
)


def _resolve(path: str) -> str:
    return str(Path(path).resolve())


def _host(host: str | None) -> str:
    """A host name (lower case, ASCII) or an IP address; ConfigError otherwise."""
    if not host:
        raise ConfigError("repository URL has no host")
    host = host.lower()
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    if not _HOST.match(host) or ".." in host:
        raise ConfigError("repository URL host is not a valid host name")
    return host


def _path(path: str) -> str:
    """``path`` when no server could take it to mean another repository."""
    if "\\" in path or _ENCODED.search(path):
        raise ConfigError("repository URL path may not contain backslashes or encoded "
                          "dots or slashes")
    segments = path.strip("/").split("/")
    if any(s in (".", "..") for s in segments):
        raise ConfigError("repository URL path may not contain . or .. segments")
    if path.strip("/") and "" in segments:
        raise ConfigError("repository URL path has an empty segment")
    return path
