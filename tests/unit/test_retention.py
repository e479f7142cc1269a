"""Retention's decisions (pipeline/retention.py): what a pruned task context keeps."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from pipeline.retention import prune_context


def test_pruning_a_context_drops_stage_outputs_and_keeps_summaries_statuses_and_errors():
    context = {
        "nodes": {
            "VerifyNode": {"status": "failed", "attempt": 1, "outputs": {"commands": ["x" * 9]},
                           "error": {"classification": "verification", "message": "m"}},
            "MergeNode": {"status": "succeeded", "outputs": {"mergeCommit": "abc"}},
        },
        "tasks": {"1.1": {"status": "failed", "attempts": 1}},
        "metadata": {"correlationId": "c0ffee"},
    }
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    pruned = prune_context(msgspec.json.decode(msgspec.json.encode(context)), at)
    assert pruned["tasks"] == context["tasks"]
    assert pruned["metadata"] == context["metadata"]
    assert pruned["nodes"] == {
        "VerifyNode": {"status": "failed", "attempt": 1,
                       "error": {"classification": "verification", "message": "m"}},
        "MergeNode": {"status": "succeeded"},
    }
    assert pruned["pruned"] == {"at": "2026-01-02T03:04:05.000Z",
                                "what": "stage outputs (retention)"}
