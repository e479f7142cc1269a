"""Git credentials from server-side configuration only, handed to libgit2 via callbacks.

The file named by ``DEVTEAM_WORKSPACE_GIT_CREDENTIALS`` is TOML::

    [hosts."github.com"]
    token = "ghp_..."                 # HTTPS; username defaults to "x-access-token"
    [hosts."git.example.com"]
    ssh_key = "/etc/devteam/keys/id_ed25519"
    ssh_pubkey = "/etc/devteam/keys/id_ed25519.pub"
    passphrase = "..."
    [customers."customer-123"]
    token = "..."                     # wins over a host entry for this customer
    hosts = ["github.com"]            # optional: only for these hosts (recommended)

Credentials never come from an API body and are never stored in the database. Their values
are secrets: they are excluded from every ``repr`` and message here, and
``CredentialStore.secret_values()`` gives them to the redactor.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import pygit2
from pygit2.enums import CredentialType

from runner.errors import ConfigError
from runner.git.remote import CredentialsRejectedError, RemoteUrl, parse_remote_url
from runner.settings import Settings, get_settings

MAX_ATTEMPTS = 3
"""Credential requests answered per operation before giving up (a rejected token loops)."""


class _Entry(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    token: str | None = None
    username: str = "x-access-token"
    ssh_key: str | None = None
    ssh_pubkey: str | None = None
    passphrase: str | None = None
    ssh_username: str | None = None
    hosts: list[str] = msgspec.field(default_factory=list)


class _File(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    hosts: dict[str, _Entry] = msgspec.field(default_factory=dict)
    customers: dict[str, _Entry] = msgspec.field(default_factory=dict)


@dataclass(frozen=True)
class Credential:
    """One configured credential; secret fields are left out of ``repr``."""

    username: str
    token: str | None = field(default=None, repr=False)
    ssh_key: str | None = None
    ssh_pubkey: str | None = None
    passphrase: str | None = field(default=None, repr=False)
    ssh_username: str | None = None


class GitCallbacks(pygit2.RemoteCallbacks):
    """Answers libgit2's credential requests and records refs the server rejected."""

    def __init__(self, remote: RemoteUrl, credential: Credential | None) -> None:
        super().__init__()
        self._remote = remote
        self._credential = credential
        self._attempts = 0
        self.rejected: dict[str, str] = {}
        """Remote ref name → the server's reason, filled during a push."""

    def __repr__(self) -> str:
        return f"GitCallbacks({self._remote.display})"

    def credentials(
        self, url: str, username_from_url: str | None, allowed_types: CredentialType
    ) -> pygit2.UserPass | pygit2.Keypair | pygit2.Username:
        """Give the configured credential once per round; stop when the server keeps refusing."""
        self._attempts += 1
        cred = self._credential
        if cred is None:
            raise CredentialsRejectedError(
                f"no git credentials are configured for {self._remote.host}")
        if self._attempts > MAX_ATTEMPTS:
            raise CredentialsRejectedError(
                f"the configured git credentials for {self._remote.host} were rejected")
        if allowed_types & CredentialType.USERNAME:
            return pygit2.Username(username_from_url or cred.ssh_username or "git")
        if allowed_types & CredentialType.SSH_KEY and cred.ssh_key:
            user = username_from_url or cred.ssh_username or "git"
            return pygit2.Keypair(user, cred.ssh_pubkey, cred.ssh_key, cred.passphrase or "")
        if allowed_types & CredentialType.USERPASS_PLAINTEXT and cred.token:
            return pygit2.UserPass(cred.username, cred.token)
        raise CredentialsRejectedError(f"no credential of a kind {self._remote.host} accepts")

    def push_update_reference(self, refname: str, message: str | None) -> None:
        if message:
            self.rejected[refname] = message


class CredentialStore:
    """Credentials per host and per customer, read once from the server's TOML file."""

    def __init__(
        self,
        hosts: dict[str, Credential] | None = None,
        customers: dict[str, tuple[Credential, tuple[str, ...]]] | None = None,
    ) -> None:
        self._hosts = dict(hosts or {})
        self._customers = dict(customers or {})

    def __repr__(self) -> str:
        return f"CredentialStore(hosts={len(self._hosts)}, customers={len(self._customers)})"

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> CredentialStore:
        """The store of ``settings.workspace.git_credentials`` (empty when unset)."""
        settings = settings or get_settings()
        if not settings.workspace.git_credentials:
            return cls()
        return cls.load(settings.path(settings.workspace.git_credentials))

    @classmethod
    def load(cls, path: Path) -> CredentialStore:
        """Read and validate a credentials file; ConfigError names the problem, never a value."""
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
            parsed = msgspec.convert(raw, _File)
        except FileNotFoundError:
            raise ConfigError(f"git credentials file {path} does not exist") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"git credentials file {path} cannot be read: "
                              f"{type(exc).__name__}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"git credentials file {path} is not valid TOML: {exc}") from None
        except msgspec.ValidationError as exc:
            raise ConfigError(f"git credentials file {path} is invalid: {exc}") from None
        hosts = {h.lower(): _credential(e) for h, e in parsed.hosts.items()}
        customers = {
            c: (_credential(e), tuple(h.lower() for h in e.hosts))
            for c, e in parsed.customers.items()
        }
        return cls(hosts, customers)

    def lookup(self, url: str | RemoteUrl, customer_id: str) -> Credential | None:
        """The credential for ``url`` on behalf of ``customer_id``; None for ``file://``."""
        remote = url if isinstance(url, RemoteUrl) else parse_remote_url(url)
        if remote.scheme == "file":
            return None
        names = [remote.host] + ([f"{remote.host}:{remote.port}"] if remote.port else [])
        by_customer = self._customers.get(customer_id)
        if by_customer and (not by_customer[1] or any(n in by_customer[1] for n in names)):
            return by_customer[0]
        for name in reversed(names):
            if name in self._hosts:
                return self._hosts[name]
        return None

    def callbacks(self, url: str | RemoteUrl, customer_id: str) -> GitCallbacks:
        """Fresh callbacks for one network operation on ``url`` for ``customer_id``."""
        remote = url if isinstance(url, RemoteUrl) else parse_remote_url(url)
        return GitCallbacks(remote, self.lookup(remote, customer_id))

    def secret_values(self) -> list[str]:
        """Every configured token and passphrase (for the redactor)."""
        creds = list(self._hosts.values()) + [c for c, _ in self._customers.values()]
        values = {v for c in creds for v in (c.token, c.passphrase) if v}
        return sorted(values)


def _credential(entry: _Entry) -> Credential:
    return Credential(
        username=entry.username, token=entry.token, ssh_key=entry.ssh_key,
        ssh_pubkey=entry.ssh_pubkey, passphrase=entry.passphrase, ssh_username=entry.ssh_username,
    )
