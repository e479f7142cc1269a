"""``iso``: every timestamp the service writes (frames, views, problem bodies)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from pipeline.store.common import iso

AWARE = st.datetimes(min_value=datetime(1000, 1, 2), max_value=datetime(9999, 12, 30),
                     timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)),
                                                timezone(timedelta(hours=-8))]))


def test_a_timestamp_reads_in_utc_with_milliseconds_and_z() -> None:
    assert iso(datetime(2026, 12, 5, 3, 4, 5, 123999, tzinfo=UTC)) == "2026-12-05T03:04:05.123Z"
    assert iso(datetime(2026, 12, 5, 0, 30, tzinfo=timezone(timedelta(hours=2)))) == (
        "2026-12-04T22:30:00.000Z")


@given(AWARE)
def test_any_aware_timestamp_round_trips_to_the_millisecond(ts: datetime) -> None:
    text = iso(ts)
    assert len(text) == 24 and text.endswith("Z")
    back = datetime.fromisoformat(text)
    assert back.tzinfo is not None
    assert timedelta(0) <= ts - back < timedelta(milliseconds=1)
