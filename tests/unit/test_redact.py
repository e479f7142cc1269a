"""The redactor against a corpus of real-looking files, with and without secrets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.redact import _JWT, Redactor, default_redactor, marker, secret_env_values
from runner.settings import reset_settings_cache

CORPUS = Path(__file__).resolve().parents[1] / "fixtures_redaction"
CLEAN = sorted((CORPUS / "clean").iterdir())
SECRET = sorted(p for p in (CORPUS / "secret").iterdir() if p.suffix not in (".redacted", ".json"))
PLANTED: dict[str, list[str]] = json.loads((CORPUS / "secret" / "secrets.json").read_text())


@pytest.mark.parametrize("path", CLEAN, ids=lambda p: p.name)
def test_given_ordinary_code_logs_and_diffs_when_redacted_then_nothing_changes(path: Path) -> None:
    text = path.read_text()
    assert Redactor().redact(text) == text


@pytest.mark.parametrize("path", SECRET, ids=lambda p: p.name)
def test_given_a_file_with_planted_secrets_when_redacted_then_each_is_gone(path: Path) -> None:
    out = Redactor().redact(path.read_text())

    for secret in PLANTED[path.name]:
        assert secret not in out
    assert out == path.with_name(path.name + ".redacted").read_text()


@pytest.mark.parametrize("path", CLEAN + SECRET, ids=lambda p: p.name)
def test_given_redacted_text_when_redacted_again_then_it_is_unchanged(path: Path) -> None:
    redactor = Redactor(["Xk9pL2mQ7vRt"])
    once = redactor.redact(path.read_text())
    assert redactor.redact(once) == once


def test_every_secret_file_is_listed_with_its_planted_values() -> None:
    assert {p.name for p in SECRET} == set(PLANTED)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ghp_" + "a1B2c3D4e5" * 4, "[REDACTED:github-token]"),
        ("key sk-proj-abcdefghijklmnop1234567890ABCDEF", "key [REDACTED:openai-key]"),
        ("id AKIAIOSFODNN7EXAMPLE.", "id [REDACTED:aws-access-key]."),
        ("Authorization: Bearer abc.def-123456789", "Authorization: Bearer [REDACTED:bearer]"),
        ("https://user:hunter22@github.com/x.git", "https://user:***@github.com/x.git"),
        ("https://abcdef0123456789abcdef@gitlab.com/x", "https://***@gitlab.com/x"),
        ("xoxp-1234567890-abcdefghij", "[REDACTED:slack-token]"),
        ("DB_PASSWORD=s3cr3tP4ss", "DB_PASSWORD=[REDACTED:secret]"),
        ('{"api_key": "abc123def456"}', '{"api_key": "[REDACTED:secret]"}'),
        ("tokenizer = Tokenizer(vocab_size=32000)", "tokenizer = Tokenizer(vocab_size=32000)"),
        ("password: str = ''", "password: str = ''"),
        ("password=password", "password=password"),
        ("self.token = self.tokens.v2", "self.token = self.tokens.v2"),
        ("if token == 'abc123xyz':", "if token == 'abc123xyz':"),
        ("Bearer authentication is used", "Bearer authentication is used"),
        ("pip install risk-assessment-module-2024x", "pip install risk-assessment-module-2024x"),
        (
            "postgresql+asyncpg://devteam@127.0.0.1:5432/db",
            "postgresql+asyncpg://devteam@127.0.0.1:5432/db",
        ),
    ],
)
def test_given_a_snippet_when_redacted_then_only_the_token_is_replaced(
    text: str, expected: str
) -> None:
    assert Redactor().redact(text) == expected


def test_given_configured_secrets_when_plain_or_url_encoded_then_both_are_replaced() -> None:
    redactor = Redactor(["pa ss/w0rd!", "tiny"])
    out = redactor.redact("plain pa ss/w0rd! encoded pa%20ss%2Fw0rd%21 and tiny stays")
    assert out == "plain [REDACTED:secret] encoded [REDACTED:secret] and tiny stays"


def test_given_a_redactor_when_extended_with_more_secrets_then_the_original_is_unchanged() -> None:
    base = Redactor(["first-secret-1"])
    more = base.with_secrets(["second-secret-2"])
    text = "first-secret-1 second-secret-2"
    assert base.redact(text) == "[REDACTED:secret] second-secret-2"
    assert more.redact(text) == "[REDACTED:secret] [REDACTED:secret]"


def test_given_nested_values_when_redact_obj_then_strings_are_redacted_and_keys_kept() -> None:
    obj = {
        "password": "my-secret-9",
        "lines": ["ok", "token=my-secret-9", ("AKIAIOSFODNN7EXAMPLE",)],
        "count": 3,
        "flag": None,
    }
    out = Redactor(["my-secret-9"]).redact_obj(obj)
    assert out == {
        "password": "[REDACTED:secret]",
        "lines": ["ok", "token=[REDACTED:secret]", ("[REDACTED:aws-access-key]",)],
        "count": 3,
        "flag": None,
    }


def test_given_settings_and_secret_env_vars_when_default_redactor_then_all_are_redacted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DEVTEAM_MODEL_API_KEY", "model-key-from-settings")
    monkeypatch.setenv("CUSTOMER_DEPLOY_TOKEN", "plainwordsecretvalue")
    monkeypatch.setenv("SHORT_TOKEN", "short")
    monkeypatch.setenv("HOME_DIRECTORY", "not-a-secret-by-name")
    reset_settings_cache()
    try:
        out = default_redactor().redact(
            "k=model-key-from-settings t=plainwordsecretvalue s=short h=not-a-secret-by-name"
        )
    finally:
        reset_settings_cache()
    assert out == "k=[REDACTED:secret] t=[REDACTED:secret] s=short h=not-a-secret-by-name"
    assert "short" not in secret_env_values({"A_TOKEN": "short", "B": "longer-value-1"})


@settings(max_examples=200, deadline=None)
@given(
    before=st.text(max_size=200),
    after=st.text(max_size=200),
    secret=st.from_regex(r"[A-Za-z0-9_+/=-]{5,30}[0-9][A-Za-z0-9]{2,10}", fullmatch=True),
)
def test_property_a_configured_secret_never_survives_in_any_surrounding_text(
    before: str, after: str, secret: str
) -> None:
    out = Redactor([secret]).redact(before + secret + after)
    assert secret not in out
    assert marker("secret") in out


def test_given_a_key_block_printed_line_by_line_when_redacted_per_line_then_no_line_leaks() -> None:
    text = (CORPUS / "secret" / "id_rsa_in_log.txt").read_text()
    redact_line = Redactor().lines()

    out = [redact_line(line) for line in text.splitlines()]

    joined = "\n".join(out)
    for secret in PLANTED["id_rsa_in_log.txt"]:
        assert secret not in joined
    assert out[0] == "Writing deploy key to /home/runner/.ssh/id_ed25519"
    assert out[1:5] == ["[REDACTED:private-key]"] * 4
    assert out[5].startswith("Key written. Fingerprint SHA256:")


KEY_BODY = ["MIIEowIBAAKCAQEAplantedKeyBodyLineOne0123456789", "plantedKeyBodyLineTwo9876543210AbCd"]


def test_given_a_second_key_block_opened_on_the_same_line_then_its_body_lines_are_hidden() -> None:
    # Given a closed block and then an unclosed one on one line
    redact_line = Redactor().lines()
    lines = [
        ("-----BEGIN EC PRIVATE KEY-----x-----END EC PRIVATE KEY----- and "
         "-----BEGIN RSA PRIVATE KEY-----"),
        *KEY_BODY,
        "-----END RSA PRIVATE KEY----- done",
        "after the key",
    ]
    # When redacted line by line
    out = [redact_line(line) for line in lines]
    # Then the second block's body is hidden up to its END, and what follows is not
    assert out == [
        "[REDACTED:private-key] and [REDACTED:private-key]",
        "[REDACTED:private-key]",
        "[REDACTED:private-key]",
        "[REDACTED:private-key] done",
        "after the key",
    ]


def test_given_a_key_block_closed_then_reopened_after_its_end_line_then_the_new_body_is_hidden() -> None:
    redact_line = Redactor().lines()
    out = [redact_line(line) for line in [
        "-----BEGIN RSA PRIVATE KEY-----", "body",
        "-----END RSA PRIVATE KEY----- -----BEGIN OPENSSH PRIVATE KEY-----", *KEY_BODY,
    ]]
    assert out[2:] == ["[REDACTED:private-key] [REDACTED:private-key]",
                       "[REDACTED:private-key]", "[REDACTED:private-key]"]


def test_given_an_unclosed_key_block_then_the_tools_marked_lines_still_pass_redacted() -> None:
    # Given a model that printed a BEGIN line and never closed it, and the tool's own
    # marked reports after it
    mark = "@@devteam-0123456789abcdef@@ "
    redact_line = Redactor().with_secrets(["sk-model-secret-0042"]).trusting(mark).lines()
    out = [redact_line(line) for line in [
        "-----BEGIN RSA PRIVATE KEY-----", KEY_BODY[0],
        f"{mark}Tokens: 900k sent, 2k received. Cost: $2.70 message, $2.70 session.",
        f"{mark}key sk-model-secret-0042", KEY_BODY[1],
        f"not the mark {mark}Tokens: 1 sent, 1 received.",
    ]]
    # Then the marked lines survive (redacted on their own), the block stays open for the rest
    assert out == [
        "[REDACTED:private-key]",
        "[REDACTED:private-key]",
        f"{mark}Tokens: 900k sent, 2k received. Cost: $2.70 message, $2.70 session.",
        f"{mark}key [REDACTED:secret]",
        "[REDACTED:private-key]",
        "[REDACTED:private-key]",
    ]


def test_given_a_trusting_redactor_when_extended_then_it_still_trusts_only_its_mark() -> None:
    mark = "@@devteam-0123456789abcdef@@ "
    redactor = Redactor().trusting(mark).with_secrets(["another-secret-1"]).with_paths([])
    redact_line = redactor.lines()
    redact_line("-----BEGIN RSA PRIVATE KEY-----")
    assert redact_line(f"{mark}x another-secret-1") == f"{mark}x [REDACTED:secret]"
    assert redact_line("@@devteam-ffffffffffffffff@@ x") == "[REDACTED:private-key]"
    plain = Redactor().lines()
    plain("-----BEGIN RSA PRIVATE KEY-----")
    assert plain(f"{mark}x") == "[REDACTED:private-key]"


JWT = ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1c2VyLTQyIn0."
       "c2lnbmF0dXJlLWZvci10ZXN0cy0xMjM0NTY3OA")


def test_a_jwt_match_never_starts_inside_a_run_of_its_characters() -> None:
    # What keeps a hostile "eyJeyJeyJ…" line linear: the pattern is tried only where a run
    # of base64url characters starts. Tried at every "eyJ" of the run, each attempt read to
    # the run's end: 80 KB took 1.5 s, 1 MB about four minutes.
    text = "eyJ" * 5 + JWT[3:]
    assert _JWT.match(text, 0) is not None
    assert [i for i in range(1, 20) if _JWT.match(text, i) is not None] == []
    glued = f"x{JWT} -{JWT} _{JWT} ({JWT}"
    assert [glued[m.start() - 1] for m in _JWT.finditer(glued)] == ["-", "("]
    assert Redactor().redact(f"Bearer {JWT}, token={JWT}, session-{JWT}") == (
        "Bearer [REDACTED:jwt], token=[REDACTED:jwt], session-[REDACTED:jwt]")


@pytest.mark.parametrize("unit", ["eyJ", "-eyJ", "eyJ_", "-eyJaaaaaaaa", "-eyJaaaaaaaa.",
                                  "ghp_", "github_pat_", "sk-", "xoxb-",
                                  "://a:", "-----BEGIN ", "token: ", "Bearer ", "AKIA"])
def test_given_a_hostile_line_of_repeated_token_starts_then_it_is_redacted_in_linear_time(
    unit: str,
) -> None:
    # 240 KB of one token start: quadratic passes took 20 s and more on it (minutes at
    # 1 MB); a linear redactor needs milliseconds. Each result is still what it should be.
    line = unit * (240_000 // len(unit))
    out = Redactor().redact(line)
    assert Redactor().lines()(line) == out
    assert len(out) <= len(line)
