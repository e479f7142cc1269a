"""Egress for setup containers: the allowlist, tinyproxy's filter and log, container env."""

from __future__ import annotations

import re
import time
import tracemalloc
from pathlib import Path

import pytest

from runner.errors import InfrastructureError
from runner.settings import load_settings
from runner.setup import EgressProxy, Refusal, parse_refusals
from runner.setup.egress import (
    LOG_NAME,
    LOG_READ_BYTES,
    MAX_HOST_CHARS,
    MAX_REFUSALS,
    Blocked,
    allowlist,
    ca_bundle,
    container_env,
    filter_lines,
    ports,
)

DEFAULT_HOSTS = [
    "registry.npmjs.org", "registry.yarnpkg.com", "repo.yarnpkg.com", "pypi.org",
    "files.pythonhosted.org",
]
# tinyproxy 1.11, LogLevel Info: one allowed CONNECT, a filtered CONNECT, a filtered plain
# GET, and a CONNECT to a port that is not allowed
TINYPROXY_LOG = """\
CONNECT   Dec 04 06:41:40.473 [15032]: Request (file descriptor 2): CONNECT registry.npmjs.org:443 HTTP/1.1
CONNECT   Dec 04 06:41:40.474 [15032]: Established connection to host "registry.npmjs.org" using file descriptor 3.
CONNECT   Dec 04 06:41:40.638 [15032]: Request (file descriptor 2): CONNECT example.org:443 HTTP/1.1
NOTICE    Dec 04 06:41:40.638 [15032]: Proxying refused on filtered domain "example.org"
CONNECT   Dec 04 06:41:40.645 [15032]: Request (file descriptor 2): GET http://example.org/x HTTP/1.1
NOTICE    Dec 04 06:41:40.645 [15032]: Proxying refused on filtered domain "example.org"
CONNECT   Dec 04 06:41:40.651 [15032]: Request (file descriptor 2): CONNECT registry.npmjs.org:8443 HTTP/1.1
INFO      Dec 04 06:41:40.651 [15032]: Refused CONNECT method on port 8443
"""


def settings(**setup: str):
    return load_settings({f"DEVTEAM_SETUP_{name.upper()}": value for name, value in setup.items()})


def request(pid: int, method: str, target: str) -> str:
    return (f"CONNECT   Dec 04 06:41:40.638 [{pid}]: Request (file descriptor 2): "
            f"{method} {target} HTTP/1.1")


def filtered(pid: int, host: str) -> str:
    return f'NOTICE    Dec 04 06:41:40.638 [{pid}]: Proxying refused on filtered domain "{host}"'


# ------------------------------------------------------------------------- parse_refusals
def test_given_a_real_tinyproxy_log_then_every_refusal_is_read_in_order():
    refusals = parse_refusals(TINYPROXY_LOG)

    assert [(r.host, r.port) for r in refusals] == [
        ("example.org", 443),
        ("example.org", 80),
        ("registry.npmjs.org", 8443),
    ]
    assert all(r.command == "" for r in refusals)


def test_given_only_allowed_requests_then_there_are_no_refusals():
    log = "\n".join(TINYPROXY_LOG.splitlines()[:2])

    assert parse_refusals(log) == []
    assert parse_refusals("") == []


@pytest.mark.parametrize(
    ("method", "target", "port"),
    [
        ("GET", "http://example.org:8080/simple/", 8080),
        ("POST", "http://example.org/upload", 80),
        ("CONNECT", "example.org:4443", 4443),
        ("CONNECT", "example.org", 443),
    ],
)
def test_given_a_filtered_request_then_its_port_comes_from_the_request_line(
    method, target, port
):
    log = "\n".join([request(7, method, target), filtered(7, "example.org")])

    assert parse_refusals(log) == [Refusal(host="example.org", port=port)]


def test_given_two_tinyproxy_processes_interleaved_then_each_refusal_has_its_own_request():
    log = "\n".join([
        request(1, "CONNECT", "a.example:443"),
        request(2, "GET", "http://b.example/x"),
        filtered(1, "a.example"),
        filtered(2, "b.example"),
    ])

    assert parse_refusals(log) == [
        Refusal(host="a.example", port=443),
        Refusal(host="b.example", port=80),
    ]


def test_given_a_filtered_host_in_capitals_then_it_is_reported_lower_case():
    log = "\n".join([request(3, "CONNECT", "Evil.EXAMPLE:443"), filtered(3, "Evil.EXAMPLE")])

    assert parse_refusals(log) == [Refusal(host="evil.example", port=443)]


def test_given_a_port_refusal_without_its_request_line_then_the_host_is_unknown():
    log = "INFO      Dec 04 06:41:40.651 [9]: Refused CONNECT method on port 25"

    assert parse_refusals(log) == [Refusal(host="?", port=25)]


@pytest.mark.parametrize(
    "line",
    [
        filtered(4, 'evil.org" injected="x'),
        filtered(4, "a\\\"b"),
        'NOTICE    Dec 04 06:41:40.638 [4]: Proxying refused on filtered domain "unterminated',
        "NOTICE    [4]: Proxying refused on filtered domain \"" + "x" * 1_000_000 + "\"",
        request(4, "CONNECT", "x" * 1_000_000 + ":443"),
        "[" * 1_000_000,
        "[4]: Request (file descriptor 2): " + "a " * 500_000,
        "\x00\x1b[31m\udcff garbage \ufffd",
    ],
    ids=["quotes", "escaped-quote", "unterminated", "huge-host", "huge-request", "brackets",
         "many-words", "control-characters"],
)
def test_given_a_hostile_log_line_then_the_parser_neither_crashes_nor_stalls(line):
    log = "\n".join([request(4, "CONNECT", "evil.org:443"), line, filtered(4, "evil.org")])
    started = time.monotonic()

    refusals = parse_refusals(log)

    assert time.monotonic() - started < 1.0
    assert refusals  # the last, ordinary refusal is still read
    assert refusals[-1].host == "evil.org"
    assert all(isinstance(r.port, int) for r in refusals)


def test_given_a_refusal_with_its_command_then_it_describes_itself():
    refusal = Refusal(host="example.org", port=443, command="npm ci")

    assert refusal.describe() == "blocked: example.org:443 by `npm ci`"
    assert Refusal(host="example.org", port=80).describe() == "blocked: example.org:80"


# ------------------------------------------------------------------------- filter_lines
@pytest.mark.parametrize(
    ("host", "allowed", "refused"),
    [
        ("registry.npmjs.org", ["registry.npmjs.org", "REGISTRY.NPMJS.ORG"],
         ["registry.npmjs.org.evil.com", "xregistry.npmjs.org", "a.registry.npmjs.org",
          "registryxnpmjs.org", "registry.npmjs.org\nevil.com", "npmjs.org"]),
        ("*.example.org", ["a.example.org", "a.b.example.org", "x-1.example.org"],
         ["example.org", "evil-example.org", "a.evil-example.org", "a.example.org.evil.com",
          "aexample.org", ".example.org"]),
        ("files-1.pythonhosted.org", ["files-1.pythonhosted.org"],
         ["files-1xpythonhosted.org", "files-12.pythonhosted.org"]),
    ],
)
def test_given_hosts_then_the_filter_matches_exactly_them(host, allowed, refused):
    # tinyproxy compiles these as POSIX extended regular expressions, case-insensitively
    # (FilterCaseSensitive is off by default); Python's re is a close approximation
    [line] = filter_lines([host])
    pattern = re.compile(line, re.IGNORECASE)

    for name in allowed:
        assert pattern.search(name), name
    for name in refused:
        assert not pattern.search(name), name


def test_given_several_hosts_then_there_is_one_line_each_in_order():
    lines = filter_lines(["a.example", "*.b.example", "c.example"])

    assert len(lines) == 3
    assert [bool(re.search(line, "x.b.example")) for line in lines] == [False, True, False]


def test_given_no_hosts_then_the_filter_is_empty():
    assert filter_lines([]) == []


# ---------------------------------------------------------------------------- allowlist
def test_given_default_settings_then_the_public_npm_and_python_indexes_are_allowed():
    assert allowlist(settings(), "acme") == DEFAULT_HOSTS


def test_given_allow_extra_then_it_is_added_after_the_defaults():
    hosts = allowlist(settings(allow_extra="npm.internal.example, *.git.example"), "acme")

    assert hosts == [*DEFAULT_HOSTS, "npm.internal.example", "*.git.example"]


def test_given_a_replaced_allow_then_only_it_and_the_extras_are_allowed():
    hosts = allowlist(settings(allow="pypi.example", allow_extra="npm.example"), "acme")

    assert hosts == ["pypi.example", "npm.example"]


@pytest.mark.parametrize(
    ("customer", "extra"),
    [
        ("acme", ["a.example", "b.example"]),
        ("globex", ["c.example"]),
        ("initech", []),
        ("acm", []),
        ("acme=a.example b.example", []),
    ],
)
def test_given_customer_allow_then_each_customer_gets_only_its_own_hosts(customer, extra):
    setup = settings(customer_allow="acme=a.example b.example;globex=c.example")

    assert allowlist(setup, customer) == [*DEFAULT_HOSTS, *extra]


def test_given_spaces_around_customer_entries_then_they_are_still_read():
    setup = settings(customer_allow=" acme = a.example ,b.example ; ; globex=")

    assert allowlist(setup, "acme") == [*DEFAULT_HOSTS, "a.example", "b.example"]
    assert allowlist(setup, "globex") == DEFAULT_HOSTS


def test_given_repeated_and_mixed_case_hosts_then_they_are_lower_cased_once_each():
    setup = settings(allow_extra="PyPI.org Registry.NPMJS.org. x.example X.EXAMPLE",
                     customer_allow="acme=x.example,pypi.org")

    assert allowlist(setup, "acme") == [*DEFAULT_HOSTS, "x.example"]


@pytest.mark.parametrize(
    "entry",
    ["https://x.org/", "x.org:443", "../x", "x.org/path", "*", "*.", "-x.org", "x_y.org",
     "a..b", "user@x.org", "*.*.x.org", "x" * 64 + ".org"],
)
def test_given_an_entry_that_is_not_a_host_name_then_infrastructure_error_names_it(entry):
    with pytest.raises(InfrastructureError) as raised:
        allowlist(settings(allow_extra=entry), "acme")

    assert raised.value.details == {"entry": entry}
    assert "DEVTEAM_SETUP_ALLOW" in raised.value.message


def test_given_a_bad_entry_for_another_customer_then_this_customer_is_unaffected():
    setup = settings(customer_allow="acme=https://x.org/;globex=c.example")

    assert allowlist(setup, "globex") == [*DEFAULT_HOSTS, "c.example"]
    with pytest.raises(InfrastructureError):
        allowlist(setup, "acme")


# ------------------------------------------------------------------------ container_env
@pytest.mark.parametrize("has_ca", [True, False])
def test_given_any_run_then_the_proxy_variables_point_at_container_loopback(has_ca):
    env = container_env(has_ca)

    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "npm_config_proxy",
                 "npm_config_https_proxy"):
        assert env[name] == "http://127.0.0.1:3128", name
    for name in ("NO_PROXY", "no_proxy"):
        assert set(env[name].split(",")) >= {"localhost", "127.0.0.1", "::1"}


def test_given_a_ca_bundle_then_every_client_is_told_to_trust_it():
    env = container_env(True)

    for name in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "PIP_CERT", "CURL_CA_BUNDLE",
                 "NODE_EXTRA_CA_CERTS", "npm_config_cafile", "GIT_SSL_CAINFO"):
        assert env[name] == "/run/devteam-egress/ca.pem", name


def test_given_no_ca_bundle_then_no_ca_variable_is_set():
    env = container_env(False)

    assert not {"SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "PIP_CERT", "CURL_CA_BUNDLE",
                "NODE_EXTRA_CA_CERTS", "npm_config_cafile", "GIT_SSL_CAINFO"} & set(env)
    assert not any("ca.pem" in value for value in env.values())


# ---------------------------------------------------------------------------- ca_bundle
def test_given_a_ca_bundle_setting_naming_a_missing_file_then_infrastructure_error(tmp_path):
    missing = tmp_path / "nope.pem"

    with pytest.raises(InfrastructureError) as raised:
        ca_bundle(settings(ca_bundle=str(missing)))

    assert raised.value.details == {"path": str(missing)}
    assert "DEVTEAM_SETUP_CA_BUNDLE" in raised.value.message


def test_given_a_ca_bundle_setting_naming_a_directory_then_infrastructure_error(tmp_path):
    with pytest.raises(InfrastructureError):
        ca_bundle(settings(ca_bundle=str(tmp_path)))


def test_given_a_ca_bundle_setting_naming_a_file_then_that_file_is_used(tmp_path):
    bundle = tmp_path / "corp-ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")

    assert ca_bundle(settings(ca_bundle=str(bundle))) == bundle


@pytest.mark.parametrize("target", ["evil.org:\u00b2", "evil.org:443\u00b2", "evil.org:" + "9" * 5000])
def test_given_a_hostile_port_in_the_log_then_the_parser_falls_back_to_the_default(target):
    log = (f"CONNECT   Dec 04 06:41:40.638 [1]: Request (file descriptor 2): CONNECT {target} "
           "HTTP/1.1\n"
           'NOTICE    Dec 04 06:41:40.638 [1]: Proxying refused on filtered domain "evil.org"\n')

    assert parse_refusals(log) == [Refusal(host="evil.org", port=443)]


def test_given_a_port_setting_that_is_not_a_port_then_infrastructure_error_names_it():
    settings = load_settings({"DEVTEAM_SETUP_PORTS": "443,https"})

    with pytest.raises(InfrastructureError) as raised:
        ports(settings)

    assert "'https'" in raised.value.message


# ---------------------------------------------------------- bounded refusals (hostile logs)
def flood(count: int, start: int = 0) -> str:
    """What tinyproxy logs when a command asks for ``count`` distinct hosts off the list."""
    return "".join(f"{request(i, 'CONNECT', f'h{i}.evil.example:443')}\n{filtered(i, f'h{i}.evil.example')}\n"
                   for i in range(start, start + count))


def test_given_20000_distinct_refused_hosts_then_100_are_kept_and_the_rest_counted():
    blocked = Blocked()

    kept = [blocked.add(r) for r in parse_refusals(flood(20_000))]

    assert kept.count(True) == MAX_REFUSALS == 100
    assert len(blocked.kept) == 100  # the duplicate check never looks past these
    assert [r.host for r in blocked.kept[:2]] == ["h0.evil.example", "h1.evil.example"]
    assert blocked.unlisted == 19_900
    hosts = blocked.hosts()
    assert hosts.endswith(" and 19900 more refused requests (not listed)")
    assert len(hosts) < 3_000  # was 488,888 characters


def test_given_a_client_retrying_a_kept_refusal_then_the_repeats_are_not_counted():
    blocked = Blocked(limit=2)
    first, second, third = (Refusal(host=f"{n}.example", port=443, command="npm ci")
                            for n in ("a", "b", "c"))

    added = [blocked.add(r) for r in (first, first, second, first, third, third, second)]

    assert added == [True, False, True, False, False, False, False]
    assert (blocked.kept, blocked.unlisted) == ([first, second], 2)


def test_given_a_host_name_longer_than_dns_allows_then_it_is_cut():
    log = "\n".join([request(5, "CONNECT", "x" * 100_000 + ":443"), filtered(5, "x" * 100_000)])

    [refusal] = parse_refusals(log)

    assert refusal.host == "x" * MAX_HOST_CHARS + "…"


def proxy_with_log(tmp_path) -> tuple[EgressProxy, Path]:
    proxy = EgressProxy(settings(), "acme", tmp_path)  # not started: only its log is read
    return proxy, tmp_path / LOG_NAME


def append(log: Path, data: str | bytes) -> None:
    with log.open("ab") as out:
        out.write(data.encode() if isinstance(data, str) else data)


def test_given_commands_one_after_another_then_each_is_charged_only_what_it_logged(tmp_path):
    proxy, log = proxy_with_log(tmp_path)
    assert proxy.new_refusals("before any log") == []
    append(log, flood(2))
    append(log, request(9, "CONNECT", "late.example:443") + "\n" + filtered(9, "late")[:30])

    first = proxy.new_refusals("npm ci")
    append(log, filtered(9, "late.example")[30:] + "\n" + flood(1, start=20))
    second = proxy.new_refusals("npm run build")

    assert [(r.host, r.command) for r in first] == [("h0.evil.example", "npm ci"),
                                                    ("h1.evil.example", "npm ci")]
    assert [(r.host, r.command) for r in second] == [("late.example", "npm run build"),
                                                     ("h20.evil.example", "npm run build")]
    assert proxy.new_refusals("pip install") == []
    assert proxy.unread_bytes == 0


def test_given_a_command_that_logs_more_than_one_read_then_the_rest_is_skipped_and_counted(
    tmp_path,
):
    proxy, log = proxy_with_log(tmp_path)
    lines = flood(60_000)  # ~8.7 MiB of log
    append(log, lines + "NOTICE [7]: Proxying refused on filtered domain \"cut-in-the-mid")
    assert len(lines.encode()) > LOG_READ_BYTES

    flooded = proxy.new_refusals("npm ci")
    append(log, "dle.example\"\n" + flood(1, start=99_999))
    after = proxy.new_refusals("pip install")

    assert 0 < len(flooded) < 60_000
    assert flooded[-1].host != "cut-in-the-mid"
    assert proxy.unread_bytes > 0
    assert [(r.host, r.command) for r in after] == [("h99999.evil.example", "pip install")]


def test_given_a_huge_log_already_read_then_the_next_command_reads_only_what_it_added(tmp_path):
    proxy, log = proxy_with_log(tmp_path)
    with log.open("wb") as out:  # 256 MiB, sparse: what a flood of requests leaves behind
        out.truncate(256 << 20)
    append(log, "\n")
    assert proxy.new_refusals("npm ci") == []
    append(log, flood(1))

    tracemalloc.start()
    try:
        refusals = proxy.new_refusals("pip install")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert [r.host for r in refusals] == ["h0.evil.example"]
    assert peak < 1 << 20  # the 256 MiB already seen is not read again
    assert proxy.unread_bytes == (256 << 20) + 1  # one line past any read: none parsed
