"""Which repository URLs a customer may use (runner.git.policy), decided without any
network request: the resolver is a parameter, so every answer a DNS server could give is
played here."""

from __future__ import annotations

import pytest

from runner.errors import Classification, ConfigError, TransientError
from runner.git.policy import Allowed, Prefix, Refused, RepositoryPolicy, resolve_host
from runner.git.remote import UNREACHABLE, UrlCredentialsError, parse_remote_url
from runner.settings import load_settings

PUBLIC = {"github.com": ["140.82.121.4"], "gitlab.com": ["172.65.251.78"]}


def resolver(table: dict[str, list[str]]):
    def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise OSError(f"cannot resolve {host}")
        return table[host]
    return resolve


def policy(repos: str = "", private: str = "", table: dict[str, list[str]] | None = None,
           **env: str) -> RepositoryPolicy:
    settings = load_settings({"DEVTEAM_GIT_CUSTOMER_REPOS": repos,
                              "DEVTEAM_GIT_PRIVATE_HOSTS": private, **env})
    return RepositoryPolicy.from_settings(settings, resolver(table or PUBLIC))


def reason(decision) -> str:
    assert isinstance(decision, Refused), decision
    return decision.reason


# ---------------------------------------------------------------------------- credentials
@pytest.mark.parametrize("url", [
    "https://github.com/victim/app.git?access_token=ghp_secret123",
    "https://x-access-token:ghp_secret123@github.com/victim/app.git",
    "https://ghp_secret123@github.com/victim/app.git",
    "ssh://git:ghp_secret123@github.com/victim/app.git",
    "git@github.com:victim/app.git?token=ghp_secret123",
])
def test_a_url_carrying_credentials_is_refused_and_its_secret_never_echoed(url):
    with pytest.raises(UrlCredentialsError) as caught:
        parse_remote_url(url)

    assert "ghp_secret123" not in caught.value.message
    decision = policy("victim=https://github.com/victim/").decide("victim", url)
    assert "ghp_secret123" not in reason(decision)


@pytest.mark.parametrize("url", [
    "https://github.com/acme/../victim/app.git",
    "https://github.com/acme/%2e%2e/victim/app.git",
    "https://github.com/acme%2Fvictim/app.git",
    "https://github.com/acme/./app.git",
    "https://github.com/acme//app.git",
    "https://github.com/acme\\..\\victim/app.git",
    "git@github.com:acme/../victim/app.git",
    "https://gіthub.com/acme/app.git",  # a Cyrillic i
])
def test_a_path_or_host_a_server_could_read_as_another_repository_is_refused(url):
    with pytest.raises(ConfigError):
        parse_remote_url(url)
    assert isinstance(policy("acme=https://github.com/acme/").decide("acme", url), Refused)


# ---------------------------------------------------------------------------- prefixes
@pytest.mark.parametrize(("url", "covered"), [
    ("https://github.com/acme/web.git", True),
    ("https://github.com/acme/web", True),
    ("https://GitHub.com/acme/web.git", True),
    ("https://github.com:443/acme/web.git", True),
    ("https://github.com/acme", True),
    ("https://github.com/acme-evil/web.git", False),
    ("https://github.com/victim/web.git", False),
    ("https://github.com/ACME/web.git", False),  # paths are compared as written
    ("https://github.com:8443/acme/web.git", False),
    ("http://github.com/acme/web.git", False),
    ("ssh://git@github.com/acme/web.git", False),
    ("https://github.com.evil.io/acme/web.git", False),
])
def test_an_https_prefix_covers_whole_segments_on_its_exact_scheme_host_and_port(url, covered):
    prefix = Prefix.parse("https://github.com/acme")

    assert prefix.covers(parse_remote_url(url)) is covered


def test_an_scp_prefix_and_an_ssh_url_name_the_same_place_and_the_user_must_match():
    prefix = Prefix.parse("git@github.com:acme/")

    assert prefix.covers(parse_remote_url("ssh://git@github.com/acme/web.git"))
    assert prefix.covers(parse_remote_url("git@github.com:acme/web.git"))
    assert not prefix.covers(parse_remote_url("root@github.com:acme/web.git"))
    assert not prefix.covers(parse_remote_url("ssh://git@github.com:2222/acme/web.git"))


# ---------------------------------------------------------------------------- customers
def test_a_customer_may_use_only_its_own_prefixes():
    rules = policy("acme=https://github.com/acme/ git@github.com:acme/;"
                   "victim=https://github.com/victim/")

    assert isinstance(rules.decide("acme", "https://github.com/acme/web.git"), Allowed)
    assert isinstance(rules.decide("acme", "git@github.com:acme/web.git"), Allowed)
    refused = rules.decide("acme", "https://github.com/victim/private.git")
    assert "not allowed for customer 'acme'" in reason(refused)
    assert isinstance(rules.decide("victim", "https://github.com/victim/private.git"), Allowed)
    assert isinstance(rules.decide("nobody", "https://github.com/acme/web.git"), Refused)


def test_without_any_prefix_every_network_url_is_refused():
    rules = policy()

    assert "DEVTEAM_GIT_CUSTOMER_REPOS" in reason(
        rules.decide("acme", "https://github.com/acme/web.git"))


def test_a_star_entry_applies_to_every_customer_and_to_tokens_of_none():
    rules = policy("*=https://gitlab.com/public/;acme=https://github.com/acme/")

    assert isinstance(rules.decide("globex", "https://gitlab.com/public/x.git"), Allowed)
    assert isinstance(rules.decide("", "https://gitlab.com/public/x.git"), Allowed)
    assert isinstance(rules.decide("acme", "https://gitlab.com/public/x.git"), Allowed)
    assert isinstance(rules.decide("globex", "https://github.com/acme/web.git"), Refused)


@pytest.mark.parametrize("text", [
    "acme", "ac me=https://github.com/acme/", "acme=ftp://x/", "acme=file:///srv/repos",
    "acme=https://github.com/acme/?t=1",
])
def test_a_malformed_customer_repos_setting_is_a_config_error(text):
    with pytest.raises(ConfigError, match="DEVTEAM_GIT_CUSTOMER_REPOS"):
        policy(text)


def test_the_refusal_reads_the_same_whatever_the_port_or_host():
    rules = policy("acme=https://github.com/acme/")
    urls = [f"https://127.0.0.1:{port}/x.git" for port in (22, 5432, 6379, 65000)]
    urls += ["ssh://git@10.0.0.7:2222/x", "http://169.254.169.254/latest/meta-data"]

    assert len({reason(rules.decide("acme", url)) for url in urls}) == 1


# ---------------------------------------------------------------------------- destinations
@pytest.mark.parametrize("address", [
    "127.0.0.1", "::1", "10.1.2.3", "172.16.0.9", "192.168.1.1", "169.254.169.254",
    "fe80::1", "fd00::5", "100.64.0.1", "0.0.0.0", "::ffff:127.0.0.1", "224.0.0.1",
])
def test_a_host_that_resolves_to_a_non_public_address_is_refused(address):
    rules = policy("acme=https://git.acme.io/", table={"git.acme.io": [address]})

    assert "private network" in reason(rules.decide("acme", "https://git.acme.io/web.git"))


def test_one_private_address_among_public_ones_is_enough_to_refuse():
    rules = policy("acme=https://git.acme.io/",
                   table={"git.acme.io": ["140.82.121.4", "127.0.0.1"]})

    assert isinstance(rules.decide("acme", "https://git.acme.io/web.git"), Refused)


def test_the_operator_may_allow_a_private_host_by_name_address_or_network():
    table = {"git.corp": ["10.20.0.5"], "other.corp": ["10.20.9.9"], "db.corp": ["10.30.0.1"]}
    rules = policy("acme=https://git.corp/ https://other.corp/ https://db.corp/",
                   private="git.corp, 10.20.9.0/24", table=table)

    assert isinstance(rules.decide("acme", "https://git.corp/web.git"), Allowed)
    assert isinstance(rules.decide("acme", "https://other.corp/web.git"), Allowed)
    assert isinstance(rules.decide("acme", "https://db.corp/web.git"), Refused)


def test_http_goes_only_to_hosts_the_operator_allows():
    table = {"git.corp": ["10.20.0.5"], **PUBLIC}
    rules = policy("acme=http://git.corp/ http://github.com/acme/", private="git.corp",
                   table=table)

    assert isinstance(rules.decide("acme", "http://git.corp/web.git"), Allowed)
    assert "use https://" in reason(rules.decide("acme", "http://github.com/acme/web.git"))


def test_a_name_that_does_not_resolve_is_unreachable_and_transient():
    rules = policy("acme=https://git.gone.io/")

    decision = rules.decide("acme", "https://git.gone.io/web.git")

    assert isinstance(decision, Refused)
    assert decision.reason == UNREACHABLE
    assert decision.classification is Classification.TRANSIENT
    with pytest.raises(TransientError):
        rules.require("acme", "https://git.gone.io/web.git")
    assert isinstance(rules.decide("acme", "https://git.gone.io/web.git", resolve=False),
                      Allowed)


def test_http_to_a_name_no_private_host_could_allow_is_refused_whether_it_resolves_or_not():
    # http:// goes only to hosts DEVTEAM_GIT_PRIVATE_HOSTS allows: with no network named,
    # a name it does not name can never qualify, so DNS failing now changes nothing
    rules = policy("acme=http://git.gone.io/ http://github.com/acme/")
    with_network = policy("acme=http://git.gone.io/", private="10.20.0.0/16")
    named = policy("acme=http://git.gone.io/", private="git.gone.io")

    gone = rules.decide("acme", "http://git.gone.io/web.git")
    public = rules.decide("acme", "http://github.com/acme/web.git")

    assert isinstance(gone, Refused) and gone.classification is Classification.CONFIG
    assert reason(gone) == reason(public)
    assert "use https://" in reason(gone)
    with pytest.raises(ConfigError):
        rules.require("acme", "http://git.gone.io/web.git")
    # ...while a name that may resolve into an allowed network, or is named, is retried
    for maybe in (with_network, named):
        later = maybe.decide("acme", "http://git.gone.io/web.git")
        assert isinstance(later, Refused), later
        assert later.classification is Classification.TRANSIENT


@pytest.mark.parametrize("char", ["\x01", "\x1b", "\x7f", "\x85", "\x9b", "\u200b", "\u200e",
                                  "\u202e", "\u2028", "\u2066", "\ufeff"])
def test_control_and_format_characters_anywhere_in_a_url_are_refused(char):
    rules = policy("acme=https://github.com/acme/")

    for url in (f"https://github.com/acme/w{char}eb.git", f"https://github.com/{char}acme/x",
                f"git@github.com:acme/web{char}.git"):
        decision = rules.decide("acme", url)
        assert reason(decision) == "repository URL is empty or contains control characters"
        assert decision.classification is Classification.CONFIG


def test_the_real_resolver_sees_a_decimal_loopback_address_for_what_it_is():
    rules = RepositoryPolicy.from_settings(
        load_settings({"DEVTEAM_GIT_CUSTOMER_REPOS": "acme=https://2130706433/"}), resolve_host)

    assert resolve_host("2130706433", 443) == ["127.0.0.1"]
    assert "private network" in reason(rules.decide("acme", "https://2130706433/x.git"))


def test_file_urls_stay_the_operators_and_are_not_per_customer(tmp_path):
    inside = tmp_path / "repos"
    rules = policy(DEVTEAM_WORKSPACE_ALLOWED_FILE_ROOTS=str(inside))

    assert isinstance(rules.decide("anyone", f"file://{inside}/app.git"), Allowed)
    assert "allowed file roots" in reason(rules.decide("anyone", f"file://{tmp_path}/x.git"))
    assert "not allowed" in reason(policy().decide("anyone", f"file://{inside}/app.git"))
