"""Repository URLs: what we accept, how we name them, and how git failures are reported.

A URL reaches us from a client (``repositoryUrl``), so it is checked before libgit2 sees it:
only ``https://``, ``ssh://``/``user@host:path``, ``http://`` to a loopback host, and
``file://`` under ``DEVTEAM_WORKSPACE_ALLOWED_FILE_ROOTS`` are accepted, and a URL carrying
credentials is refused (credentials come only from server-side configuration). Every
message built here shows the URL without user information and with configured secrets
removed, because libgit2's own messages may quote what it was given.
"""

from __future__ import annotations

import errno
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pygit2

from runner.errors import ConfigError, InfrastructureError, RunnerError, TransientError
from runner.settings import Settings

_SCP = re.compile(r"^(?:(?P<user>[A-Za-z0-9._~-]+)@)?(?P<host>[A-Za-z0-9.-]+):(?P<path>[^/].*)\Z")
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]*@")
_DEFAULT_PORTS = {"https": 443, "http": 80, "ssh": 22}
_SSH_SCHEMES = {"ssh", "git+ssh", "ssh+git"}


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
        return f"{self.scheme}://{user}{self.host}{port}/{path}"

    @property
    def display(self) -> str:
        """Safe to show: no user information, no query string."""
        if self.scheme == "file":
            return f"file://{self.path}"
        port = f":{self.port}" if self.port else ""
        return f"{self.scheme}://{self.host}{port}/{self.path.lstrip('/')}"


def parse_remote_url(url: str) -> RemoteUrl:
    """Parse ``url`` (syntax only, no policy). Raises ConfigError when it is not a git URL."""
    text = url.strip()
    if not text or any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise ConfigError("repository URL is empty or contains control characters")
    if text.startswith("/"):
        return RemoteUrl(raw=text, scheme="file", host="", port=None, path=_resolve(text))
    if "://" not in text:
        scp = _SCP.match(text)
        if not scp:
            raise ConfigError("repository URL is not a URL git understands")
        return RemoteUrl(raw=text, scheme="ssh", host=scp["host"].lower(), port=None,
                         path=scp["path"], user=scp["user"])
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise ConfigError("repository URL is malformed") from None
    scheme = parts.scheme.lower()
    if scheme in _SSH_SCHEMES:
        if parts.password is not None:
            raise ConfigError("credentials in the repository URL are not accepted")
        return RemoteUrl(raw=text, scheme="ssh", host=(parts.hostname or ""), port=port,
                         path=parts.path, user=parts.username)
    if scheme in ("https", "http"):
        if parts.username is not None or parts.password is not None:
            raise ConfigError(
                "credentials in the repository URL are not accepted; "
                "they are configured on the server"
            )
        if not parts.hostname:
            raise ConfigError("repository URL has no host")
        return RemoteUrl(raw=text, scheme=scheme, host=parts.hostname, port=port,
                         path=parts.path)
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ConfigError("file:// repository URLs must name a local path")
        return RemoteUrl(raw=text, scheme="file", host="", port=None, path=_resolve(parts.path))
    raise ConfigError(f"repository URL scheme {scheme!r} is not supported")


def check_remote_url(url: str, settings: Settings) -> RemoteUrl:
    """Parse ``url`` and apply the server's policy; ConfigError says why it is refused."""
    remote = parse_remote_url(url)
    if remote.scheme == "http" and not _is_loopback(remote.host):
        raise ConfigError("http:// repositories are only accepted on loopback hosts; use https://")
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
) -> RunnerError:
    """Turn a pygit2/OS failure of ``action`` into a classified RunnerError.

    Authentication failures and missing repositories are ``config`` (a person must fix the
    settings), network failures ``transient``, local I/O trouble ``infrastructure``.
    """
    where = f" ({remote.display})" if remote else ""
    raw = scrub(str(exc), secrets)
    details = {"action": action, "git_message": raw[:500]}
    if remote:
        details["repository"] = remote.display
    if isinstance(exc, CredentialsRejectedError):
        return ConfigError(f"{action}{where}: authentication failed ({exc})", details=details)
    if isinstance(exc, OSError) and not isinstance(exc, pygit2.GitError):
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return InfrastructureError(f"{action}: no space left on device", details=details)
        return InfrastructureError(f"{action}: {raw}", details=details)
    low = raw.lower()
    if any(m in low for m in _CONTENT_MARKERS):
        # What the repository holds, not our machinery: the same error on every retry.
        return ConfigError(f"{action}{where}: the repository's content cannot be used: {raw}",
                           details=details)
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
)
"""libgit2 refusing what a repository holds: a ``.gitmodules`` it will not read (``update =
!command``), a path it will not check out (``.git`` inside, a name too long)."""
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


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
