"""Tenant-visible text never shows the host's paths: working-copy paths become
repository-relative, the service's directories become placeholders."""

from __future__ import annotations

import tempfile
from pathlib import Path

from runner.redact import Redactor, host_paths, tenant_redactor
from runner.settings import PROJECT_ROOT, load_settings, reset_settings_cache


def redactor(root: Path) -> Redactor:
    settings = load_settings({"DEVTEAM_WORKSPACE_ROOT": str(root)})
    return Redactor(["s3cret-value-1"]).with_paths(host_paths(settings))


def test_given_a_libgit2_message_about_a_working_copy_then_the_path_is_repository_relative(
    tmp_path,
):
    root = tmp_path / "workspaces"
    copy = root / "acme" / "work" / "web" / "0b6f0c1e-9d7a-4c55-a1a4-5c7a2f0e9b11"
    text = (f"commit files: failed to parse config file '{copy}/.git/config' (in line 1); "
            f"not a git working copy: {copy} (s3cret-value-1)")

    out = redactor(root).redact(text)

    assert out == ("commit files: failed to parse config file '.git/config' (in line 1); "
                   "not a git working copy: <working copy> ([REDACTED:secret])")


def test_given_service_directories_then_each_becomes_a_placeholder(tmp_path):
    root = tmp_path / "workspaces"
    tool = Path(tempfile.gettempdir()) / "devteam-aider-k2j3h4"
    text = (f"cache {root}/acme/cache/3f2a.git; traceback {PROJECT_ROOT}/.venv-aider/lib/x.py; "
            f"history {tool}/chat.md")

    out = redactor(root).redact(text)

    assert out == ("cache <workspace>/acme/cache/3f2a.git; traceback <service>/.venv-aider/lib/"
                   "x.py; history <tool>/chat.md")
    for value in (str(root), str(PROJECT_ROOT), str(tool)):
        assert value not in out


def test_given_a_longer_name_that_starts_like_a_service_path_then_it_is_kept(tmp_path):
    root = tmp_path / "workspaces"
    text = f"{PROJECT_ROOT}line/file.txt and {root}-old/x"
    assert redactor(root).redact(text) == text


def test_given_json_values_and_a_secret_then_both_kinds_go_and_redacting_twice_changes_nothing(
    tmp_path,
):
    root = tmp_path / "workspaces"
    copy = root / "c1" / "work" / "p1" / "e1"
    value = {"message": f"open {copy}/src/app.py", "details": {"exception": str(copy)},
             "list": [f"{root}/c1", "s3cret-value-1"]}
    once = redactor(root).redact_obj(value)
    assert once == {"message": "open src/app.py", "details": {"exception": "<working copy>"},
                    "list": ["<workspace>/c1", "[REDACTED:secret]"]}
    assert redactor(root).redact_obj(once) == once
    # adding secrets later keeps the path rules
    assert redactor(root).with_secrets(["another-secret-2"]).redact(str(copy)) == "<working copy>"


def test_the_tenant_redactor_hides_the_configured_workspace(tmp_path, monkeypatch):
    monkeypatch.setenv("DEVTEAM_WORKSPACE_ROOT", str(tmp_path / "ws"))
    reset_settings_cache()
    try:
        assert tenant_redactor().redact(f"at {tmp_path}/ws/a/work/b/c/x.py") == "at x.py"
    finally:
        monkeypatch.delenv("DEVTEAM_WORKSPACE_ROOT")
        reset_settings_cache()
