"""docs/frontend.md cannot drift from what the server sends: its frame-type table names
every frame type with its payload fields (stored frames from ``pipeline.frames``, control
frames from ``gateway.frames``, the types the gateway encodes every frame with), its
envelope table every top-level field of a frame, and its close-code table every code the
WebSocket closes with."""

from __future__ import annotations

import re
from pathlib import Path

import msgspec

from gateway.frames import CONTROL_TYPES, UpdateFrame
from gateway.routes.stream import CLOSE_CODES
from pipeline.frames import PAYLOADS

PAGE = Path(__file__).resolve().parents[2] / "docs" / "frontend.md"
README = PAGE.parents[1] / "README.md"


def section(title: str) -> str:
    """The text under the heading ``title`` up to the next heading of any level."""
    text = PAGE.read_text(encoding="utf-8")
    match = re.search(rf"^#+ {re.escape(title)}\n(.*?)(?=^#+ )", text, re.M | re.S)
    assert match, f"no section {title!r} in {PAGE.name}"
    return match.group(1)


def table(text: str, header: str = "") -> list[list[str]]:
    """The body rows of the first Markdown table in ``text`` whose header row starts with
    ``| header``, cell by cell."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {header}"))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def names(cell: str) -> set[str]:
    """The backticked names in a cell, without an optional marker (``pauseReason?``)."""
    return {name.rstrip("?") for name in re.findall(r"`([^`]+)`", cell)}


def fields(struct: type[msgspec.Struct]) -> set[str]:
    return {f.encode_name for f in msgspec.structs.fields(struct)}


def test_the_frame_types_are_the_ones_the_server_sends_with_their_payload_fields() -> None:
    documented = {(row[0].strip("`"), row[1]): names(row[2])
                  for row in table(section("Frame types"))}
    sent = {(kind, "stored"): fields(payload) for kind, payload in PAYLOADS.items()}
    sent |= {(kind, "control"): fields(payload) for payload, kind in CONTROL_TYPES.items()}
    assert documented == sent


def test_the_envelope_lists_every_top_level_field_of_a_frame() -> None:
    documented = set().union(*(names(row[0]) for row in table(section("Frames"))))
    assert documented == fields(UpdateFrame)


def test_every_close_code_is_documented() -> None:
    documented = {int(row[0]) for row in table(section("Connecting to the live stream"),
                                               "close code")}
    assert documented == set(CLOSE_CODES)


def test_the_readme_links_the_page() -> None:
    assert "(docs/frontend.md)" in README.read_text(encoding="utf-8")
