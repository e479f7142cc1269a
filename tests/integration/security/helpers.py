"""Helpers of the security tests: the hostile suite's report, table snapshots, secret forms,
and one-task sample projects."""

from __future__ import annotations

import base64
import re
import uuid
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import text

from devtools.demo.sample import INITIAL
from pipeline.db import Store

RUN_PREFIX = f"sect-{uuid.uuid4().hex[:6]}"
"""Start of the execution ids of the containers these tests make directly."""
SUITE = Path(__file__).with_name("hostile_suite.py")
ATTEMPT = re.compile(r"^ATTEMPT (\S+) (contained|ESCAPED|started)(?::\s*(.*))?$", re.M)

ONE_TASK = """# Calculator — one task

Phase 1: Core arithmetic (Dependencies: [])

- 1.1 Add and subtract (Dependencies: [])
  • files: src/calc/basic.py, tests/test_basic.py
"""
BASIC = "def add(a: float, b: float) -> float:\n    return a + b\n"
TEST_BASIC = "from calc.basic import add\n\n\ndef test_add() -> None:\n    assert add(2, 3) == 5\n"


def model_script(reply: str = "Implementing task 1.1.") -> str:
    """The scripted model's answer to task 1.1 of ``ONE_TASK``: a passing change."""
    def toml(value: str) -> str:
        return '"""' + value.replace("\\", "\\\\").replace('"""', '\\"""') + '"""'

    return (
        f'[tasks."1.1"]\nedit_format = "whole"\nreply = {toml(reply)}\n'
        f'[[tasks."1.1".edits]]\npath = "src/calc/basic.py"\ncontent = {toml(BASIC)}\n'
        f'[[tasks."1.1".edits]]\npath = "tests/test_basic.py"\ncontent = {toml(TEST_BASIC)}\n'
    )


def project_files(**extra: str) -> dict[str, str]:
    """The sample calculator with the one-task list, plus ``extra`` files."""
    return {**INITIAL, "tasks_list.md": ONE_TASK, **extra}


def attempts(output: str) -> dict[str, tuple[str, str]]:
    """``{name: (verdict, detail)}`` from the hostile suite's ``ATTEMPT`` lines."""
    return {m[1]: (m[2], m[3] or "") for m in ATTEMPT.finditer(output)}


async def tables(store: Store) -> list[str]:
    """Every table of the public schema, by name."""
    async with store.transaction() as session:
        rows = await session.execute(text(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"))
        return [r[0] for r in rows]


async def row_counts(store: Store) -> dict[str, int]:
    """Rows in every table (the state a hostile request must not change)."""
    counts = {}
    async with store.transaction() as session:
        for table in await tables(store):
            counts[table] = (await session.execute(
                text(f'SELECT count(*) FROM "{table}"'))).scalar_one()
    return counts


async def dump_tables(store: Store) -> dict[str, str]:
    """Every row of every table as JSON text (``to_jsonb``): text, json and bytea alike."""
    dumps = {}
    async with store.transaction() as session:
        for table in await tables(store):
            rows = await session.execute(text(f'SELECT to_jsonb(t)::text FROM "{table}" t'))
            dumps[table] = "\n".join(r[0] for r in rows)
    return dumps


def secret_forms(value: str) -> set[str]:
    """``value`` as it could appear anywhere: plain, URL-quoted, and base64 at each of the
    three byte alignments (so it is found inside a longer base64 text too)."""
    raw = value.encode()
    forms = {value, quote(value, safe=""), quote(value)}
    for skip in range(3):
        chunk = raw[skip:]
        chunk = chunk[: len(chunk) - len(chunk) % 3]
        forms.add(base64.b64encode(chunk).decode())
        forms.add(base64.urlsafe_b64encode(chunk).decode())
    return forms


def find_secrets(haystacks: dict[str, str], secrets: dict[str, str]) -> list[str]:
    """``"<where>: <secret name> (<form>)"`` for every form of every secret found."""
    found = []
    for name, value in secrets.items():
        for form in secret_forms(value):
            for where, haystack in haystacks.items():
                if form in haystack:
                    found.append(f"{where}: {name} ({form[:12]}...)")
    return found


# ---------------------------------------------------------------------- raw HTTP and WS
def raw_http(port: int, request: bytes, timeout: float = 30, *, head_only: bool = False
             ) -> tuple[int, dict[str, str], bytes]:
    """Send ``request`` as is (it should say ``Connection: close``); the status, headers
    (lower-cased names) and body of the answer. ``head_only`` stops reading after the
    headers (for answers that keep the connection open)."""
    import socket

    chunks: list[bytes] = []
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(request)
            while chunk := sock.recv(65536):
                chunks.append(chunk)
                if head_only and b"\r\n\r\n" in b"".join(chunks):
                    break
    except (ConnectionResetError, BrokenPipeError):
        # The server answered and closed while the request was still arriving (a request
        # it refused before reading it all): the kernel may then reset the connection and
        # drop the answer. Status 0 says "refused without an answer we could read".
        if b"\r\n\r\n" not in b"".join(chunks):
            return 0, {}, b""
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body
