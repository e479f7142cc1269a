"""Reading a report out of a container when what the checks left there is hostile.

A fake engine stands in for Docker's ``get_archive`` (a stat, then the archive as a stream
of chunks) and counts the chunks handed out, so each test sees how much was read: never
much past ``MAX_REPORT_BYTES``, whatever the stat says and however long the stream runs.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator

import pytest

from runner.errors import Classification, VerificationError
from runner.sandbox.session import MAX_REPORT_BYTES, TAR_SLACK_BYTES, DockerSession

CHUNK = 1 << 20
GO_DIR = 1 << 31
BUDGET = MAX_REPORT_BYTES + TAR_SLACK_BYTES + CHUNK
"""The most any read may pull from the stream (the cap, the slack, one chunk)."""


class Engine:
    """``get_archive`` answering ``stat`` and streaming ``header`` then ``body_bytes`` of
    zeros, in CHUNK-sized pieces; ``handed`` counts the bytes the reader pulled."""

    def __init__(self, stat: dict[str, int], header: bytes, body_bytes: int) -> None:
        self.stat = {"name": "coverage.json", **stat}
        self.header = header
        self.body_bytes = body_bytes
        self.handed = 0

    def get_archive(self, name: str, path: str) -> tuple[Iterator[bytes], dict[str, object]]:
        return self._stream(), self.stat

    def _stream(self) -> Iterator[bytes]:
        data = io.BytesIO(self.header)
        while piece := data.read(CHUNK):
            self.handed += len(piece)
            yield piece
        left = self.body_bytes
        while left > 0:
            piece = b"\0" * min(CHUNK, left)
            left -= len(piece)
            self.handed += len(piece)
            yield piece


def header(kind: bytes, size: int = 0, name: str = "coverage.json") -> bytes:
    info = tarfile.TarInfo(name)
    info.type, info.size = kind, size
    return info.tobuf(format=tarfile.USTAR_FORMAT)


def archive(content: bytes) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        info = tarfile.TarInfo("coverage.json")
        info.size = len(content)
        tar.addfile(info, io.BytesIO(content))
    return out.getvalue()


def read(engine: Engine) -> bytes | None:
    return DockerSession(engine, "dt-box", None, "id").read_file("coverage.json")


def test_given_a_directory_at_the_report_path_then_it_fails_verification_before_reading():
    # Docker's stat of a directory says ~4 KiB; its archive is the whole tree (320 MiB)
    engine = Engine({"size": 4096, "mode": GO_DIR | 0o755}, header(tarfile.DIRTYPE),
                    320 << 20)

    with pytest.raises(VerificationError) as raised:
        read(engine)

    assert raised.value.classification is Classification.VERIFICATION
    assert "/workspace/coverage.json is a directory" in raised.value.message
    assert "8 MiB" in raised.value.message
    assert raised.value.details["limitBytes"] == MAX_REPORT_BYTES
    assert engine.handed == 0


def test_given_a_stat_saying_file_but_an_archive_of_a_directory_then_one_chunk_is_read():
    engine = Engine({"size": 4096, "mode": 0o644}, header(tarfile.DIRTYPE), 320 << 20)

    with pytest.raises(VerificationError) as raised:
        read(engine)

    assert "is a directory" in raised.value.message
    assert engine.handed <= len(engine.header) + CHUNK


def test_given_a_file_over_the_limit_then_it_fails_verification_not_infrastructure():
    engine = Engine({"size": 65 << 20, "mode": 0o644}, header(tarfile.REGTYPE, 65 << 20),
                    65 << 20)

    with pytest.raises(VerificationError) as raised:
        read(engine)

    assert raised.value.classification is Classification.VERIFICATION
    assert raised.value.details == {"path": "/workspace/coverage.json",
                                    "limitBytes": MAX_REPORT_BYTES, "sizeBytes": 65 << 20}
    assert engine.handed == 0


def test_given_a_file_grown_after_the_stat_then_its_archive_header_stops_the_read():
    engine = Engine({"size": 4096, "mode": 0o644}, header(tarfile.REGTYPE, 320 << 20),
                    320 << 20)

    with pytest.raises(VerificationError) as raised:
        read(engine)

    assert raised.value.details["sizeBytes"] == 320 << 20
    assert engine.handed <= len(engine.header) + CHUNK


def test_given_an_archive_that_runs_on_past_the_limit_then_the_read_stops_at_it():
    # an extended header claiming 320 MiB: the tar reader would load all of it
    engine = Engine({"size": 4096, "mode": 0o644}, header(tarfile.XHDTYPE, 320 << 20),
                    320 << 20)

    with pytest.raises(VerificationError) as raised:
        read(engine)

    assert "is over 8388608 bytes" in raised.value.message
    assert engine.handed <= BUDGET


@pytest.mark.parametrize("size", [0, 1, MAX_REPORT_BYTES])
def test_given_a_regular_file_up_to_the_limit_then_it_is_read_whole(size):
    content = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    engine = Engine({"size": size, "mode": 0o644}, archive(content), 0)

    assert read(engine) == content
    assert engine.handed == len(engine.header)  # the end blocks too: the connection is reusable
