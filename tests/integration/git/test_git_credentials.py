"""Server-side git credentials: bound to customers and places, lookup order, callback
kinds, and never a value in output."""

from __future__ import annotations

from pathlib import Path

import pygit2
import pytest
from pygit2.enums import CredentialType

from runner.errors import ConfigError
from runner.git import CredentialStore
from runner.git.credentials import RedirectRefusedError
from runner.git.remote import CredentialsRejectedError

HOST_TOKEN = "ghp_hostTokenValue000000000000000000000"
CUSTOMER_TOKEN = "ghp_customerTokenValue1111111111111111"
PASSPHRASE = "correct horse battery staple"
ACME_TOKEN = "ghp_acmeTokenValue22222222222222222222222"


@pytest.fixture
def store(tmp_path: Path) -> CredentialStore:
    path = tmp_path / "creds.toml"
    path.write_text(
        f"""
[hosts."github.com"]
token = "{HOST_TOKEN}"
customers = ["customer-123", "someone-else", "x"]

[hosts."git.example.com"]
ssh_key = "/etc/devteam/keys/id_ed25519"
ssh_pubkey = "/etc/devteam/keys/id_ed25519.pub"
passphrase = "{PASSPHRASE}"
customers = ["customer-9"]

[hosts."git.example.com:8443"]
token = "port-specific-token"
username = "deploy"
customers = ["customer-123"]

[customers."customer-123"]
token = "{CUSTOMER_TOKEN}"
hosts = ["github.com"]

[[credentials]]
customers = ["acme"]
urls = ["https://github.com/acme/", "git@github.com:acme/"]
token = "{ACME_TOKEN}"
ssh_key = "/etc/devteam/keys/acme"
ssh_username = "git"
"""
    )
    return CredentialStore.load(path)


def ask(store, url, customer, allowed=CredentialType.USERPASS_PLAINTEXT):
    return store.callbacks(url, customer).credentials(url, None, allowed)


def test_given_a_host_token_then_https_gets_userpass_with_the_default_username(store):
    cred = ask(store, "https://github.com/org/repo.git", "someone-else")

    assert isinstance(cred, pygit2.UserPass)
    assert cred.credential_tuple == ("x-access-token", HOST_TOKEN)


def test_given_a_customer_entry_then_it_wins_over_the_host_entry(store):
    cred = ask(store, "https://github.com/org/repo.git", "customer-123")

    assert cred.credential_tuple == ("x-access-token", CUSTOMER_TOKEN)


def test_given_a_customer_entry_limited_to_hosts_then_other_hosts_do_not_get_it(store):
    cred = ask(store, "https://git.example.com:8443/org/repo.git", "customer-123")

    assert cred.credential_tuple == ("deploy", "port-specific-token")


def test_given_an_ssh_host_then_a_keypair_with_the_url_user_is_offered(store):
    cb = store.callbacks("git@git.example.com:org/repo.git", "customer-9")

    cred = cb.credentials("git@git.example.com:org/repo.git", "git", CredentialType.SSH_KEY)

    assert isinstance(cred, pygit2.Keypair)
    assert cred.credential_tuple == (
        "git",
        "/etc/devteam/keys/id_ed25519.pub",
        "/etc/devteam/keys/id_ed25519",
        PASSPHRASE,
    )


def test_given_a_file_url_then_no_credentials_are_offered(store, tmp_path):
    assert store.lookup(f"file://{tmp_path}/repo.git", "customer-123") is None


def test_given_a_rejected_credential_then_the_callback_stops_asking(store):
    cb = store.callbacks("https://github.com/org/repo.git", "x")
    for _ in range(3):
        cb.credentials("https://github.com/org/repo.git", None, CredentialType.USERPASS_PLAINTEXT)

    with pytest.raises(CredentialsRejectedError) as caught:
        cb.credentials("https://github.com/org/repo.git", None, CredentialType.USERPASS_PLAINTEXT)

    assert HOST_TOKEN not in str(caught.value)


def test_given_an_unknown_host_then_asking_fails_without_credentials(store):
    with pytest.raises(CredentialsRejectedError, match="no git credentials are configured"):
        ask(store, "https://gitlab.com/org/repo.git", "x")


def test_secret_values_list_every_token_and_passphrase_and_reprs_hide_them(store):
    values = store.secret_values()

    assert {HOST_TOKEN, CUSTOMER_TOKEN, PASSPHRASE, "port-specific-token",
            ACME_TOKEN} <= set(values)
    cred = store.lookup("https://github.com/org/repo.git", "customer-123")
    cb = store.callbacks("https://github.com/org/repo.git", "customer-123")
    for text in (repr(store), repr(cred), repr(cb), str(cred)):
        for secret in values:
            assert secret not in text


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ('[hosts."github.com"]\ntokn = "ghp_secretvalue"\n', "tokn"),
        ('[hosts."github.com"]\ntoken = 12345678\n', "Expected `str"),
        ('[hosts."github.com"\ntoken = "ghp_secretvalue"\n', "not valid TOML"),
        ('[users."x"]\ntoken = "ghp_secretvalue"\n', "users"),
        # the README's old first example: a host's token any customer could use
        ('[hosts."github.com"]\ntoken = "ghp_secretvalue"\n', "name the customers"),
        ('[customers."acme"]\ntoken = "ghp_secretvalue"\n', "name the hosts"),
        ('[[credentials]]\ncustomers = ["acme"]\ntoken = "ghp_secretvalue"\n', "urls"),
        ('[[credentials]]\nurls = ["https://github.com/acme/"]\ntoken = "ghp_secretvalue"\n',
         "name the customers"),
        ('[hosts."github.com"]\ncustomers = ["*"]\ntoken = "ghp_secretvalue"\n',
         "not a customer id"),
        ('[hosts."github.com"]\ncustomers = ["acme"]\n', "neither a token"),
        (('[[credentials]]\ncustomers = ["acme"]\nurls = ["https://t:ghp_secretvalue@h/"]\n'
          'token = "secret-2"\n'), "credentials in the repository URL"),
    ],
)
def test_given_a_malformed_file_then_config_error_names_the_problem_not_the_value(
    tmp_path, content, match
):
    path = tmp_path / "creds.toml"
    path.write_text(content)

    with pytest.raises(ConfigError, match=match) as caught:
        CredentialStore.load(path)

    assert "ghp_secretvalue" not in str(caught.value)
    assert "12345678" not in str(caught.value)


def test_given_a_configured_file_that_does_not_exist_then_config_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        CredentialStore.load(tmp_path / "missing.toml")


# ------------------------------------------------------------------- bound to customers
def test_given_a_host_entry_then_only_the_customers_it_names_get_it(store):
    assert store.lookup("https://github.com/org/repo.git", "someone-else") is not None
    assert store.lookup("https://github.com/org/repo.git", "evil") is None
    with pytest.raises(CredentialsRejectedError, match="no git credentials"):
        ask(store, "https://github.com/org/repo.git", "evil")


@pytest.mark.parametrize(("url", "given"), [
    ("https://github.com/acme/web.git", True),
    ("git@github.com:acme/web.git", True),
    ("https://github.com/victim/private.git", False),
    ("https://github.com/acme-evil/web.git", False),
    ("https://github.com:8443/acme/web.git", False),
    ("http://github.com/acme/web.git", False),
])
def test_given_a_url_prefix_then_the_credential_goes_only_under_it(store, url, given):
    assert (store.lookup(url, "acme") is not None) is given


def test_given_a_host_without_a_port_then_other_ports_do_not_get_its_credential(store):
    assert store.lookup("https://github.com:2222/org/repo.git", "someone-else") is None
    assert store.lookup("ssh://git.example.com:2222/org/repo.git", "customer-9") is None
    assert store.lookup("ssh://git.example.com:22/org/repo.git", "customer-9") is not None


def test_given_an_ssh_prefix_naming_a_user_then_another_user_does_not_get_the_key(store):
    assert store.lookup("ssh://root@github.com/acme/web.git", "acme") is None
    cb = store.callbacks("ssh://git@github.com/acme/web.git", "acme")

    cred = cb.credentials("ssh://git@github.com/acme/web.git", "git", CredentialType.SSH_KEY)

    assert cred.credential_tuple[:2] == ("git", None)


@pytest.mark.parametrize("asked", [
    "https://gitlab.com/acme/web.git",  # another host
    "https://github.com:8443/acme/web.git",  # another port
    "http://github.com/acme/web.git",  # another scheme
    "https://github.com/victim/private.git",  # outside the credential's prefix
    "not a url",
])
def test_given_libgit2_asks_for_another_place_then_no_credential_is_given(store, asked):
    cb = store.callbacks("https://github.com/acme/web.git", "acme")

    with pytest.raises(RedirectRefusedError) as caught:
        cb.credentials(asked, None, CredentialType.USERPASS_PLAINTEXT)

    assert ACME_TOKEN not in str(caught.value)
    same = cb.credentials("https://github.com/acme/web.git", None,
                          CredentialType.USERPASS_PLAINTEXT)
    assert same.credential_tuple == ("x-access-token", ACME_TOKEN)
