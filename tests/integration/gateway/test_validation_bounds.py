"""A 400 names the bad fields, boundedly: a 1 MB POST /events whose ``data`` holds ~100,000
unknown keys gets the first ``MAX_ERRORS`` and one entry counting the rest, in a small
answer; nothing is stored."""

from __future__ import annotations

import msgspec

from gateway.validation import MAX_ERRORS


async def test_a_1mb_body_of_unknown_keys_gets_a_small_400(client, alice) -> None:
    data = {"projectId": "acme/web", **{f"{i:05d}": 1 for i in range(100_000)}}
    raw = msgspec.json.encode({"workflow_type": "DEVTEAM_AUTOMATION", "data": data})
    assert 1_000_000 < len(raw) <= 1_048_576
    response = await client.post("/events", content=raw,
                                 headers={**alice, "Content-Type": "application/json"})
    assert response.status_code == 400
    assert len(response.content) < 10_000, len(response.content)
    errors = response.json()["errors"]
    assert len(errors) == MAX_ERRORS + 1
    assert errors[0] == {"field": "data.00000", "message": "unknown field"}
    assert errors[-1]["message"].startswith(f"{100_000 - MAX_ERRORS} more errors")
