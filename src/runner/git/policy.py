"""Which repository URLs a customer may use, decided before any network request.

Tenants name repositories (``repositoryUrl``); the service holds credentials that can read
and push them. So a URL is used only when the operator allows it for the customer:

- ``DEVTEAM_GIT_CUSTOMER_REPOS`` maps customers to URL prefixes
  (``acme=https://github.com/acme/ git@github.com:acme/;globex=…``; ``*`` for everyone).
  A prefix is exact in scheme, host, port and SSH user (when it names one) and covers
  whole path segments: ``https://github.com/acme`` covers ``/acme/web.git``, never
  ``/acme-evil/x`` nor ``:8443/acme/``. Without a prefix for it, a network URL is refused.
- The destination must be public: a host that resolves to a loopback, link-local, private
  or otherwise non-global address is refused unless ``DEVTEAM_GIT_PRIVATE_HOSTS`` names
  it (by host name, address or network). ``http://`` goes only to such allowed hosts
  (plain HTTP never crosses the internet with a credential).
- ``file://`` stays the operator's (``DEVTEAM_WORKSPACE_ALLOWED_FILE_ROOTS``, empty in
  production) and is not per customer.

``RepositoryPolicy.decide`` is a function of its configuration, the customer, the URL and
what the resolver answers (a parameter, so tests give it any answer). The gateway calls it
at the door (422 naming the field) and ``GitWorkspace``/``probe_remote`` call it again
before every network operation. A name that does not resolve right now is a transient
refusal (retried; the door lets it through), except for ``http://`` to a host that no
answer could make allowed (not named, no network in ``DEVTEAM_GIT_PRIVATE_HOSTS``): that
is refused for good, at the door too, DNS or not. Refusal messages never echo the URL or
what it resolved to, so they read the same whatever the host and port.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from runner.errors import Classification, ConfigError, RunnerError, TransientError
from runner.git.remote import UNREACHABLE, RemoteUrl, check_remote_url, parse_remote_url
from runner.settings import Settings, get_settings

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Sequence[str]]
"""``(host, port) → addresses``; raises OSError when the name does not resolve."""

HTTP_REFUSED = ("http:// repositories are accepted only on hosts the operator allows "
                "(DEVTEAM_GIT_PRIVATE_HOSTS); use https://")
_CUSTOMER = re.compile(r"^(\*|[A-Za-z0-9_-]{1,100})$")
EVERYONE = "*"


def resolve_host(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (what libgit2 will connect to)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


def segments(path: str) -> tuple[str, ...]:
    """A repository path as segments, without slashes at either end or a ``.git`` suffix."""
    parts = [p for p in path.strip("/").split("/") if p]
    if parts:
        parts[-1] = parts[-1].removesuffix(".git")
    return tuple(p for p in parts if p)


@dataclass(frozen=True)
class Prefix:
    """A URL prefix: scheme (None: any), host, port (None: the scheme's default), SSH user
    (None: any) and leading path segments."""

    scheme: str | None
    host: str
    port: int | None
    user: str | None
    path: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> Prefix:
        """``https://github.com/acme/``, ``git@github.com:acme/``, ``ssh://host:2222/x``."""
        remote = parse_remote_url(text)
        if remote.scheme == "file":
            raise ConfigError("file:// prefixes are not per customer; use "
                              "DEVTEAM_WORKSPACE_ALLOWED_FILE_ROOTS")
        return cls(remote.scheme, remote.host, remote.port, remote.user, segments(remote.path))

    @classmethod
    def host_entry(cls, host: str, paths: Sequence[str] = ()) -> list[Prefix]:
        """``github.com`` or ``git.example.com:8443`` (any scheme), one prefix per path."""
        name, _, port = host.lower().rpartition(":") if ":" in host else (host.lower(), "", "")
        if port and not port.isdigit():
            raise ConfigError(f"host {host!r} is not host or host:port")
        return [cls(None, name, int(port) if port else None, None, segments(p))
                for p in (paths or ["/"])]

    def covers(self, remote: RemoteUrl) -> bool:
        """Whether ``remote`` is under this prefix (see the module docstring)."""
        if remote.scheme == "file":
            return False
        if self.scheme is not None and self.scheme != remote.scheme:
            return False
        wanted = self.port or _default_port(remote.scheme)
        if self.host != remote.host or wanted != remote.effective_port:
            return False
        if self.user is not None and self.user != remote.user:
            return False
        path = segments(remote.path)
        return path[: len(self.path)] == self.path

    @property
    def specificity(self) -> tuple[int, int]:
        """More path segments, then a named scheme, win when several prefixes cover a URL."""
        return len(self.path), int(self.scheme is not None)


def _default_port(scheme: str) -> int | None:
    return {"https": 443, "http": 80, "ssh": 22}.get(scheme)


@dataclass(frozen=True)
class PrivateHosts:
    """The non-public destinations the operator allows (``DEVTEAM_GIT_PRIVATE_HOSTS``)."""

    names: frozenset[str] = frozenset()
    networks: tuple[Network, ...] = ()

    @classmethod
    def parse(cls, text: str) -> PrivateHosts:
        names: set[str] = set()
        networks: list[Network] = []
        for item in text.replace(",", " ").split():
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                if not re.match(r"^[A-Za-z0-9.-]+$", item):
                    raise ConfigError(
                        f"DEVTEAM_GIT_PRIVATE_HOSTS: {item!r} is not a host, address or "
                        "network") from None
                names.add(item.lower())
        return cls(frozenset(names), tuple(networks))

    def allows(self, host: str, address: Address) -> bool:
        return host in self.names or any(address in net for net in self.networks)

    def may_allow(self, host: str) -> bool:
        """Whether ``host`` could be allowed whatever it resolves to: named, or some
        network is (a name is only known to lead into one once it resolves)."""
        return host in self.names or bool(self.networks)


def is_public(address: Address) -> bool:
    """A global unicast address (not loopback, link-local, private, shared, reserved...)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


@dataclass(frozen=True)
class Allowed:
    remote: RemoteUrl


@dataclass(frozen=True)
class Refused:
    """Why a URL may not be used; ``classification`` is ``transient`` when only the name
    could not be resolved now (the door lets that through; the network step decides)."""

    reason: str
    classification: Classification = Classification.CONFIG

    def error(self) -> RunnerError:
        if self.classification is Classification.TRANSIENT:
            return TransientError(self.reason)
        return ConfigError(self.reason)


Decision = Allowed | Refused


@dataclass(frozen=True)
class RepositoryPolicy:
    """The operator's rules for repository URLs (see the module docstring)."""

    customer_repos: Mapping[str, tuple[Prefix, ...]] = field(default_factory=dict)
    private: PrivateHosts = field(default_factory=PrivateHosts)
    settings: Settings | None = None
    """For ``file://`` (the allowed roots); None refuses ``file://``."""
    resolve: Resolver = resolve_host

    @classmethod
    def from_settings(cls, settings: Settings | None = None,
                      resolve: Resolver = resolve_host) -> RepositoryPolicy:
        """The policy of ``DEVTEAM_GIT_*``; ConfigError names a malformed entry."""
        settings = settings or get_settings()
        return cls(parse_customer_repos(settings.git.customer_repos),
                   PrivateHosts.parse(settings.git.private_hosts), settings, resolve)

    def prefixes(self, customer_id: str) -> tuple[Prefix, ...]:
        return self.customer_repos.get(customer_id, ()) + self.customer_repos.get(EVERYONE, ())

    def decide(self, customer_id: str, url: str, *, resolve: bool = True) -> Decision:
        """Whether ``customer_id`` may use ``url``; with ``resolve``, also where it leads."""
        try:
            if self.settings is None:
                remote = parse_remote_url(url)
                if remote.scheme == "file":
                    return Refused("file:// repositories are not allowed on this server")
            else:
                remote = check_remote_url(url, self.settings)
        except ConfigError as exc:
            return Refused(exc.message)
        if remote.scheme == "file":
            return Allowed(remote)
        if not any(prefix.covers(remote) for prefix in self.prefixes(customer_id)):
            who = f"customer {customer_id!r}" if customer_id else "this token (name its project)"
            return Refused(f"this repository URL is not allowed for {who}; the operator "
                           "allows repositories per customer (DEVTEAM_GIT_CUSTOMER_REPOS)")
        if not resolve:
            return Allowed(remote)
        return self._destination(remote)

    def require(self, customer_id: str, url: str, *, resolve: bool = True) -> RemoteUrl:
        """The checked URL, or the refusal as a RunnerError (``config`` or ``transient``)."""
        decision = self.decide(customer_id, url, resolve=resolve)
        if isinstance(decision, Refused):
            raise decision.error()
        return decision.remote

    def _destination(self, remote: RemoteUrl) -> Decision:
        try:
            found = [ipaddress.ip_address(a.split("%", 1)[0])
                     for a in self.resolve(remote.host, remote.effective_port or 0)]
        except (OSError, UnicodeError, ValueError):
            found = []
        if not found:
            if remote.scheme == "http" and not self.private.may_allow(remote.host):
                return Refused(HTTP_REFUSED)  # wherever the name leads, once it resolves
            return Refused(UNREACHABLE, Classification.TRANSIENT)
        private = [a for a in found if not is_public(a)]
        if any(not self.private.allows(remote.host, a) for a in private):
            return Refused("the repository's host is on a loopback, link-local or private "
                           "network, which this server does not allow for repositories "
                           "(DEVTEAM_GIT_PRIVATE_HOSTS)")
        if remote.scheme == "http" and not private:
            return Refused(HTTP_REFUSED)
        return Allowed(remote)


def parse_customer_repos(text: str) -> dict[str, tuple[Prefix, ...]]:
    """``acme=https://github.com/acme/ git@github.com:acme/;globex=…`` → prefixes per
    customer (``*`` for every customer); ConfigError names a malformed entry."""
    out: dict[str, tuple[Prefix, ...]] = {}
    for entry in text.split(";"):
        if not entry.strip():
            continue
        customer, sep, rest = entry.partition("=")
        customer = customer.strip()
        if not sep or not _CUSTOMER.match(customer):
            raise ConfigError(f"DEVTEAM_GIT_CUSTOMER_REPOS: {entry.strip()!r} is not "
                              "customer=prefix prefix…")
        try:
            prefixes = tuple(Prefix.parse(p) for p in rest.replace(",", " ").split())
        except ConfigError as exc:
            raise ConfigError(f"DEVTEAM_GIT_CUSTOMER_REPOS: {customer}: {exc.message}") from None
        out[customer] = out.get(customer, ()) + prefixes
    return out

