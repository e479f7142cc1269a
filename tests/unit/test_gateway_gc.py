"""The gateway's process settles its garbage collector twice: what it built to start is
frozen before it serves, and what survives the first full collection after that (what
the first requests built) is frozen then, once; later full collections scan only what
was allocated since (``gateway.server.settle_gc``). Run in a process of its own: freezing
is process-wide."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = r"""
import gc, json
from gateway.server import settle_gc

settle_gc()
at_start = gc.get_freeze_count()
built = [{"n": i, "parts": [i, str(i)]} for i in range(5000)]  # what first requests build
gc.collect(1)                    # a young collection freezes nothing
after_young = gc.get_freeze_count()
gc.collect(2)                    # the first full collection: its survivors are frozen
after_first_full = gc.get_freeze_count()
later = [{"n": i} for i in range(3000)]
gc.collect(2)                    # later ones freeze nothing more
after_second_full = gc.get_freeze_count()
settle_gc()                      # settling again (a worker's factory) adds no callback
print(json.dumps({"start": at_start, "young": after_young, "first": after_first_full,
                  "second": after_second_full, "callbacks": len(gc.callbacks),
                  "alive": len(built) + len(later)}))
"""


def test_the_first_full_collection_after_start_up_freezes_its_survivors_once() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                         check=True, timeout=120)
    counts = json.loads(out.stdout.strip().splitlines()[-1])
    assert counts["young"] == counts["start"]
    assert counts["first"] >= counts["start"] + 5000 * 2  # the dicts and their lists
    assert counts["second"] == counts["first"]
    assert counts["callbacks"] == 1
