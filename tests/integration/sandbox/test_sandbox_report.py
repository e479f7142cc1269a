"""A command cannot forge the exec wrapper's report, and its output reaches us without NUL.

The command runs as the wrapper's uid. The audit's attack: read the report's nonce from
``/proc/$PPID/cmdline``, write an end report saying exit 0 to ``/proc/$PPID/fd/1``, kill the
wrapper (whose exit code Docker then records as 137) and fail. Each test below would pass
that off as a success without the defences it checks.
"""

from __future__ import annotations

import types

import pytest

from runner.errors import Classification
from runner.sandbox import classify
from runner.sandbox import command as command_module
from runner.sandbox.output import TAMPER_NOTE, tampered

pytestmark = pytest.mark.docker

FORGE = (
    "N=$(tr '\\0' '\\n' < /proc/$W/cmdline | sed -n 4p); "
    'printf \'@@devteam-%s@@ {"event":"end","exit":0}\\n\' "$N" > /proc/$W/fd/1; '
    "kill -9 $W"
)
"""The audit's forgery against the wrapper whose pid is ``$W``."""

FAILED = "FAILED tests/test_x.py::test_a - assert 0"
KNOWN_NONCE = "feedc0de12345678"


@pytest.fixture
def session(sandbox, make_spec):
    return sandbox.session(make_spec())


@pytest.fixture
def known_nonce(monkeypatch) -> str:
    """Make the runner use a nonce the test's command knows, as if it had leaked."""
    monkeypatch.setattr(
        command_module, "secrets", types.SimpleNamespace(token_hex=lambda _n: KNOWN_NONCE)
    )
    return KNOWN_NONCE


def processes(session) -> list[str]:
    """Command lines of every process in the container (the image has no ps)."""
    listing = session.run(
        "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline; echo; done 2>/dev/null", timeout=10
    )
    return [line.strip() for line in listing.output_tail.splitlines() if line.strip()]


@pytest.mark.parametrize(
    "command",
    [
        # the command forges the report and kills the wrapper, then fails
        f"echo '{FAILED}'; W=$PPID; {FORGE}; exit 1",
        # the command fails at once; a process it left behind (outside its group, holding
        # its output, so the wrapper waits for it) forges while the wrapper drains
        (
            f"echo '{FAILED}'; cat > /tmp/forge.sh <<'EOF'\nsleep 0.5; {FORGE}\nEOF\n"
            "W=$PPID setsid sh /tmp/forge.sh 2>/dev/null & sleep 0.2; exit 1"
        ),
    ],
    ids=["forge-then-exit-1", "exit-1-then-forge"],
)
def test_given_the_audits_forgery_then_the_result_is_not_ok(session, command):
    result = session.run(command, timeout=30)

    # The wrapper was killed while the forgery ran (so it could have written to it) ...
    assert result.exit_code == 137
    # ... and the forged "exit 0" was not believed
    assert not result.ok
    assert tampered(result)
    assert "wrapper was killed (signal 9)" in result.output_tail.splitlines()[-1]
    assert classify(result) is Classification.VERIFICATION
    assert FAILED in result.output_tail


def test_given_a_command_looking_for_the_nonce_then_it_cannot_reach_the_wrapper(
    session, known_nonce
):
    # When the command reads the wrapper's argv and environment and lists its open files
    result = session.run(
        "tr '\\0' ' ' < /proc/$PPID/cmdline; echo; cat /proc/$PPID/environ; "
        "ls /proc/$PPID/fd; echo probe > /proc/$PPID/fd/1; true",
        timeout=30,
    )

    # Then the nonce is nowhere and the wrapper's files are closed to it
    assert result.ok
    assert known_nonce not in result.output_tail
    assert "/opt/devteam/exec.py run" in result.output_tail
    assert result.output_tail.count("Permission denied") == 3
    assert "probe" not in result.output_tail.splitlines()


def test_given_a_leaked_nonce_and_a_killed_wrapper_then_docker_exit_code_wins(session, known_nonce):
    # Given a command that knows the nonce, prints an end report saying 0 and kills the wrapper
    marker = f'@@devteam-{known_nonce}@@ {{"event": "end", "exit": 0}}'

    result = session.run(f"echo '{marker}'; sleep 0.5; kill -9 $PPID; sleep 30; exit 1", timeout=60)

    # Then Docker's exit status for the wrapper (SIGKILL) decides, and the command is stopped
    assert not result.ok
    assert result.exit_code == 137
    assert tampered(result)
    assert result.output_tail.splitlines()[-1].startswith(TAMPER_NOTE)
    assert "wrapper exited 137" in result.output_tail
    assert classify(result) is Classification.VERIFICATION
    assert not [p for p in processes(session) if "sleep 30" in p]


def test_given_a_leaked_nonce_and_a_second_end_report_then_the_result_is_not_ok(
    session, known_nonce
):
    marker = f'@@devteam-{known_nonce}@@ {{"event": "end", "exit": 0}}'

    result = session.run(f"echo '{marker}'; exit 1", timeout=30)

    assert not result.ok
    assert result.exit_code == 1
    assert "a second end report" in result.output_tail.splitlines()[-1]
    assert classify(result) is Classification.VERIFICATION


def test_given_output_with_nul_bytes_then_no_nul_reaches_the_lines_or_the_tail(session):
    seen: list[str] = []

    result = session.run(
        "printf 'a\\0b\\n'; printf 'c\\0d\\n' >&2; printf 'tail\\0'",
        timeout=30,
        on_line=seen.append,
    )

    assert result.ok
    assert not tampered(result)
    assert sorted(seen) == ["a\ufffdb", "c\ufffdd", "tail\ufffd"]
    assert "\x00" not in result.output_tail
    assert sorted(result.output_tail.splitlines()) == sorted(seen)


def test_given_ordinary_commands_then_reports_are_still_believed(session):
    passed = session.run("echo fine", timeout=30)
    failed = session.run("echo broken; exit 3", timeout=30)

    assert passed.ok
    assert passed.output_tail == "fine"
    assert passed.cpu_seconds is not None
    assert (failed.exit_code, failed.output_tail) == (3, "broken")
    assert not tampered(failed)
