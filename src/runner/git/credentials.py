"""Git credentials from server-side configuration only, bound to customers and to the
exact place they are for, handed to libgit2 via callbacks.

The file named by ``DEVTEAM_WORKSPACE_GIT_CREDENTIALS`` is TOML::

    [[credentials]]                   # the general form
    customers = ["acme"]              # who may use it (required)
    urls = ["https://github.com/acme/", "git@github.com:acme/"]  # where it goes (required)
    token = "ghp_..."                 # HTTPS; username defaults to "x-access-token"

    [hosts."git.example.com:2222"]    # shorthand: one host (and port), any scheme
    customers = ["acme", "globex"]    # required
    paths = ["/acme/", "/globex/"]    # optional: only repositories under these paths
    ssh_key = "/etc/devteam/keys/id_ed25519"
    ssh_pubkey = "/etc/devteam/keys/id_ed25519.pub"
    passphrase = "..."

    [customers."customer-123"]        # shorthand: one customer
    token = "..."
    hosts = ["github.com"]            # required (or urls = [...]); paths = [...] optional

A credential is offered only to a customer it names, for a URL one of its prefixes covers
(exact scheme when named, host, port (none: the scheme's default) and whole path segments),
and only when libgit2 asks on behalf of that same place: after a redirect to another host,
port or path the callback refuses. Off-site redirects are refused outright
(``follow_redirects = NONE``); listing a remote's refs goes through a fetch for the same
reason. When several credentials cover a URL, the one with the longest path prefix wins,
then a customer's own entry over a host entry.

Credentials never come from an API body and are never stored in the database. Their values
are secrets: they are excluded from every ``repr`` and message here, and
``CredentialStore.secret_values()`` gives them to the redactor.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import pygit2
from pygit2.enums import CredentialType
from pygit2.ffi import C as LIBGIT2
from pygit2.remotes import RemoteHead

from runner.errors import ConfigError
from runner.git.policy import Prefix
from runner.git.remote import CredentialsRejectedError, RemoteUrl, parse_remote_url
from runner.settings import Settings, get_settings

MAX_ATTEMPTS = 3
"""Credential requests answered per operation before giving up (a rejected token loops)."""
_CUSTOMER = re.compile(r"^[A-Za-z0-9_-]{1,100}$")
_LIST_ONLY = "refs/devteam-list-only/none:refs/devteam-list-only/none"
"""A refspec no server advertises: a fetch with it lists the refs and downloads nothing."""


class RedirectRefusedError(CredentialsRejectedError):
    """libgit2 asked for credentials on behalf of a place the credential is not for (the
    server redirected to another host, port or path)."""


class _Entry(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    token: str | None = None
    username: str = "x-access-token"
    ssh_key: str | None = None
    ssh_pubkey: str | None = None
    passphrase: str | None = None
    ssh_username: str | None = None
    customers: list[str] = msgspec.field(default_factory=list)
    hosts: list[str] = msgspec.field(default_factory=list)
    urls: list[str] = msgspec.field(default_factory=list)
    paths: list[str] = msgspec.field(default_factory=list)


class _File(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    credentials: list[_Entry] = msgspec.field(default_factory=list)
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


@dataclass(frozen=True)
class Binding:
    """A credential, the customers it is for, and the URL prefixes it may be sent to."""

    credential: Credential
    customers: frozenset[str]
    scopes: tuple[Prefix, ...]
    rank: int = 1
    """1 for a customer's own entry or a ``[[credentials]]`` entry, 0 for a host entry."""

    def scope_for(self, remote: RemoteUrl) -> Prefix | None:
        """The most specific of ``scopes`` covering ``remote``."""
        covering = [s for s in self.scopes if s.covers(remote)]
        return max(covering, key=lambda s: s.specificity, default=None)


class GitCallbacks(pygit2.RemoteCallbacks):
    """Answers libgit2's credential requests for one place, refuses redirects, and records
    refs the server rejected."""

    def __init__(
        self, remote: RemoteUrl, credential: Credential | None, scope: Prefix | None = None
    ) -> None:
        super().__init__()
        self._remote = remote
        self._credential = credential
        self._scope = scope
        self._attempts = 0
        self._fetch_options: Any = None
        self._push_options: Any = None
        self.rejected: dict[str, str] = {}
        """Remote ref name → the server's reason, filled during a push."""

    def __repr__(self) -> str:
        return f"GitCallbacks({self._remote.display})"

    # pygit2 hands us the options struct just before the call: refuse off-site redirects.
    @property
    def fetch_options(self) -> Any:
        return self._fetch_options

    @fetch_options.setter
    def fetch_options(self, opts: Any) -> None:
        if opts is not None:
            opts.follow_redirects = LIBGIT2.GIT_REMOTE_REDIRECT_NONE
        self._fetch_options = opts

    @property
    def push_options(self) -> Any:
        return self._push_options

    @push_options.setter
    def push_options(self, opts: Any) -> None:
        if opts is not None:
            opts.follow_redirects = LIBGIT2.GIT_REMOTE_REDIRECT_NONE
        self._push_options = opts

    def credentials(
        self, url: str, username_from_url: str | None, allowed_types: CredentialType
    ) -> pygit2.UserPass | pygit2.Keypair | pygit2.Username:
        """Give the configured credential once per round, only for the place it is for;
        stop when the server keeps refusing."""
        self._attempts += 1
        cred = self._credential
        if cred is None:
            raise CredentialsRejectedError(
                f"no git credentials are configured for {self._remote.host} for this customer")
        if not self._same_place(url):
            raise RedirectRefusedError(
                f"refused to send the credential for {self._remote.display} elsewhere "
                "(the server redirected)")
        if self._attempts > MAX_ATTEMPTS:
            raise CredentialsRejectedError(
                f"the configured git credentials for {self._remote.host} were rejected")
        if allowed_types & CredentialType.USERNAME:
            return pygit2.Username(cred.ssh_username or username_from_url or "git")
        if allowed_types & CredentialType.SSH_KEY and cred.ssh_key:
            user = cred.ssh_username or username_from_url or "git"
            return pygit2.Keypair(user, cred.ssh_pubkey, cred.ssh_key, cred.passphrase or "")
        if allowed_types & CredentialType.USERPASS_PLAINTEXT and cred.token:
            return pygit2.UserPass(cred.username, cred.token)
        raise CredentialsRejectedError(f"no credential of a kind {self._remote.host} accepts")

    def _same_place(self, url: str) -> bool:
        """Whether libgit2 asks on behalf of our remote's scheme, host and port, under the
        credential's path prefix."""
        try:
            asked = parse_remote_url(url)
        except ConfigError:
            return False
        if (asked.scheme, asked.host, asked.effective_port) != (
            self._remote.scheme, self._remote.host, self._remote.effective_port
        ):
            return False
        return self._scope is None or self._scope.covers(asked)

    def push_update_reference(self, refname: str, message: str | None) -> None:
        if message:
            self.rejected[refname] = message


def remote_heads(remote: pygit2.Remote, callbacks: GitCallbacks) -> list[RemoteHead]:
    """The refs ``remote`` advertises. pygit2's ``connect()`` (behind ``list_heads``) cannot
    be told to refuse redirects and follows one to any host; a fetch can, so the refs are
    listed by a fetch of a refspec that matches nothing."""
    remote.fetch([_LIST_ONLY], callbacks=callbacks)
    return remote.list_heads(connect=False)


class CredentialStore:
    """Credentials bound to customers and URL prefixes, read once from the server's file."""

    def __init__(self, bindings: Sequence[Binding] = ()) -> None:
        self._bindings = tuple(bindings)

    def __repr__(self) -> str:
        return f"CredentialStore(bindings={len(self._bindings)})"

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
        try:
            bindings = _bindings(parsed)
        except ConfigError as exc:
            raise ConfigError(f"git credentials file {path}: {exc.message}") from None
        return cls(bindings)

    def find(self, url: str | RemoteUrl, customer_id: str) -> tuple[Credential, Prefix] | None:
        """The credential ``customer_id`` may send to ``url``, with the prefix it is sent
        under; None for ``file://`` and when none is configured."""
        remote = url if isinstance(url, RemoteUrl) else parse_remote_url(url)
        if remote.scheme == "file":
            return None
        found = [(b.scope_for(remote), b) for b in self._bindings if customer_id in b.customers]
        best = max(((s, b) for s, b in found if s is not None),
                   key=lambda sb: (sb[0].specificity, sb[1].rank), default=None)
        return (best[1].credential, best[0]) if best else None

    def lookup(self, url: str | RemoteUrl, customer_id: str) -> Credential | None:
        """The credential for ``url`` on behalf of ``customer_id``; None for ``file://``."""
        found = self.find(url, customer_id)
        return found[0] if found else None

    def callbacks(self, url: str | RemoteUrl, customer_id: str) -> GitCallbacks:
        """Fresh callbacks for one network operation on ``url`` for ``customer_id``."""
        remote = url if isinstance(url, RemoteUrl) else parse_remote_url(url)
        found = self.find(remote, customer_id)
        return GitCallbacks(remote, *(found or (None, None)))

    def secret_values(self) -> list[str]:
        """Every configured token and passphrase (for the redactor)."""
        creds = [b.credential for b in self._bindings]
        values = {v for c in creds for v in (c.token, c.passphrase) if v}
        return sorted(values)


def _bindings(parsed: _File) -> list[Binding]:
    out: list[Binding] = []
    for i, entry in enumerate(parsed.credentials, 1):
        where = f"credentials entry {i}"
        _refuse(entry, where, hosts=True, paths=True)
        if not entry.urls:
            raise ConfigError(f"{where}: name the URL prefixes it is sent to (urls = [...])")
        out.append(Binding(_credential(entry, where), _customers(entry.customers, where),
                           tuple(_prefix(u, where) for u in entry.urls)))
    for host, entry in parsed.hosts.items():
        where = f"hosts.{host}"
        _refuse(entry, where, hosts=True, urls=True)
        out.append(Binding(_credential(entry, where), _customers(entry.customers, where),
                           tuple(Prefix.host_entry(host, entry.paths)), rank=0))
    for customer, entry in parsed.customers.items():
        where = f"customers.{customer}"
        _refuse(entry, where, customers=True)
        if not entry.hosts and not entry.urls:
            raise ConfigError(f"{where}: name the hosts (hosts = [...]) or URL prefixes "
                              "(urls = [...]) this credential is sent to")
        scopes = [s for h in entry.hosts for s in Prefix.host_entry(h, entry.paths)]
        scopes += [_prefix(u, where) for u in entry.urls]
        out.append(Binding(_credential(entry, where), _customers([customer], where),
                           tuple(scopes)))
    return out


def _refuse(entry: _Entry, where: str, *, customers: bool = False, hosts: bool = False,
            urls: bool = False, paths: bool = False) -> None:
    for name, banned in (("customers", customers), ("hosts", hosts), ("urls", urls),
                         ("paths", paths)):
        if banned and getattr(entry, name):
            raise ConfigError(f"{where}: `{name}` does not belong in this kind of entry")


def _customers(names: list[str], where: str) -> frozenset[str]:
    if not names:
        raise ConfigError(f"{where}: name the customers this credential is for "
                          "(customers = [...]); a credential every customer could use would "
                          "let one customer reach another's repositories")
    for name in names:
        if not _CUSTOMER.match(name):
            raise ConfigError(f"{where}: {name!r} is not a customer id")
    return frozenset(names)


def _prefix(url: str, where: str) -> Prefix:
    try:
        return Prefix.parse(url)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc.message}") from None


def _credential(entry: _Entry, where: str) -> Credential:
    if not entry.token and not entry.ssh_key:
        raise ConfigError(f"{where}: has neither a token nor an ssh_key")
    return Credential(
        username=entry.username, token=entry.token, ssh_key=entry.ssh_key,
        ssh_pubkey=entry.ssh_pubkey, passphrase=entry.passphrase, ssh_username=entry.ssh_username,
    )
