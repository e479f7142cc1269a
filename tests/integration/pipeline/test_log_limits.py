"""A stage's output flood against the real notifications table: the log sink keeps what a
stage run adds to the stream within ``DEVTEAM_LIMITS_LOG_*`` and says what it dropped.

The attack it reproduces: a test command printing 2,000-character random lines grew
``notifications`` by ~9 MB/s. (The same flood through the whole pipeline, Docker and all,
is in tests/integration/security/test_storage_limits.py.)
"""

from __future__ import annotations

import asyncio
import random
import string
import threading

from sqlalchemy import text
from tests.e2e.checks import frames
from tests.support.streams import new_execution

from pipeline.logsink import LogSink
from runner.limits import LogLimits
from runner.redact import Redactor

MB = 1024 * 1024


def random_lines(n: int, width: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    alphabet = string.ascii_letters + string.digits
    return ["".join(rng.choices(alphabet, k=width)) for _ in range(n)]


async def table_bytes(store) -> int:
    async with store.transaction() as session:
        return int((await session.execute(
            text("SELECT pg_total_relation_size('notifications')"))).scalar_one())


def make_sink(store, execution, limits: LogLimits) -> LogSink:
    return LogSink(store, Redactor(), execution_id=execution, stage="VERIFY", task_id="1.1",
                   flush_ms=50, batch_lines=200, limits=limits)


async def flood(sink: LogSink, lines: list[str]) -> None:
    """Print ``lines`` from a worker thread, as a container's output reader does."""
    sink.start()
    writer = sink.sink()
    thread = threading.Thread(target=lambda: [writer(line) for line in lines])
    thread.start()
    await asyncio.to_thread(thread.join)
    sink.line("verification: test.pass FAILED")  # the service's own line, after the flood
    await sink.close()


def logged(got: list[dict]) -> list[str]:
    return [line for f in got if f["type"] == "execution-log" for line in f["payload"]["lines"]]


async def test_given_a_flood_of_long_random_lines_then_the_table_grows_by_a_bounded_amount(store):
    execution = await new_execution(store, "acme/web")
    # 20,000 lines of 2,000 random characters: 40 MB of output from one stage run
    lines = random_lines(20_000, 2000)
    limits = LogLimits()  # the defaults: 5,000 lines, 2 MiB, 2,000 bytes per line
    before = await table_bytes(store)

    await flood(make_sink(store, execution, limits), lines)

    growth = await table_bytes(store) - before
    # the stated bound: at most 5 MB per stage run (the defaults keep 2 MiB of text)
    assert growth <= 5 * MB, f"notifications grew by {growth:,} bytes"
    got = logged(await frames(store, execution))
    kept = [line for line in got if not line.startswith("… ")]
    assert kept[: len(kept) - 1] == lines[: len(kept) - 1]  # a prefix of the output, in order
    text_bytes = sum(len(line.encode()) for line in kept)
    assert text_bytes <= limits.bytes + 100  # + the service's own line
    markers = [line for line in got if line.startswith("… ")]
    assert markers == [
        ("… output limit reached (limit 2,097,152 bytes of output per stage): further lines "
         "are dropped and counted …"),
        (f"… {20_000 - (len(kept) - 1):,} lines dropped (limit 2,097,152 bytes of output per "
         "stage) …"),
    ]
    # the service's line still got through, after the limit was reached, before the count
    assert got[-2] == "verification: test.pass FAILED"


async def test_given_many_short_lines_then_the_line_limit_stops_them_and_says_how_many(store):
    execution = await new_execution(store, "acme/web")
    lines = [f"test_{i} PASSED" for i in range(12_345)]

    await flood(make_sink(store, execution, LogLimits(lines=1000)), lines)

    got = logged(await frames(store, execution))
    assert got[:1000] == lines[:1000]
    assert got[1000] == ("… output limit reached (limit 1,000 lines per stage): further lines "
                         "are dropped and counted …")
    assert got[1001:] == ["verification: test.pass FAILED",
                          "… 11,345 lines dropped (limit 1,000 lines per stage) …"]


async def test_a_line_longer_than_the_line_limit_is_cut_and_says_so(store):
    execution = await new_execution(store, "acme/web")
    line = random_lines(1, 100_000)[0]

    await flood(make_sink(store, execution, LogLimits(line_bytes=2000)), [line, "next"])

    got = logged(await frames(store, execution))
    assert got[0] == line[:2000] + " … 98,000 bytes cut (limit 2,000 per line)"
    assert got[1:] == ["next", "verification: test.pass FAILED"]
