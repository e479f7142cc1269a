"""Sandbox benchmark: how long a task container takes to be ready, and to go away.

    .venv/bin/python bench/sandbox.py [--runs 20] [--json]

Measures, in one run against the configured engine:
- bootstrap: ``DockerSandbox.session`` = volume + create + start + health check (git,
  python3, node answer), ready for commands;
- raw: a plain ``docker run --rm --network none <image> true`` through the SDK (create,
  start, wait, remove), the floor any container pays on this engine;
- teardown: ``DockerSandbox.remove`` (kill + remove container and volume);
- copy_in_10mb: ``copy_in`` of a 10 MB working copy (200 files of 50 KB).
Bootstrap and raw runs alternate so both see the same machine load. Prints a table and,
last, one JSON line (with ``--json`` only that line is meant for machines).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

_HERE = Path(__file__).resolve().parent
if sys.path and Path(sys.path[0] or ".").resolve() == _HERE:
    sys.path.pop(0)  # bench/runner.py must not shadow the ``runner`` package

from runner.ports import ContainerSpec  # noqa: E402
from runner.sandbox import DockerSandbox, build_image, make_client  # noqa: E402
from runner.settings import get_settings  # noqa: E402


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def raw_run(api, image: str) -> float:
    started = time.perf_counter()
    host_config = api.create_host_config(network_mode="none")
    container = api.create_container(image, command=["true"], host_config=host_config)
    try:
        api.start(container["Id"])
        api.wait(container["Id"])
    finally:
        api.remove_container(container["Id"], force=True)
    return time.perf_counter() - started


def make_tree(root: Path, total_bytes: int = 10 * 2**20, files: int = 200) -> None:
    size = total_bytes // files
    for i in range(files):
        sub = root / f"pkg{i % 10}"
        sub.mkdir(exist_ok=True)
        (sub / f"file{i}.bin").write_bytes(os.urandom(size))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--json", action="store_true", help="End with one JSON line.")
    args = parser.parse_args()

    settings = get_settings()
    client = make_client(settings)
    image = build_image(client, settings, log=lambda m: print(m, file=sys.stderr)).image
    sandbox = DockerSandbox(client, settings=settings, image=image)
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    boot, raw, teardown, copy = [], [], [], []
    try:
        raw_run(client.api, image)  # warm the engine's caches for both kinds
        for i in range(args.runs):
            raw.append(raw_run(client.api, image))
            spec = ContainerSpec(
                customer_id="bench", project_id="bench/p", execution_id=prefix, task_id=str(i)
            )
            started = time.perf_counter()
            session = sandbox.session(spec)
            boot.append(time.perf_counter() - started)
            if i == 0:
                with tempfile.TemporaryDirectory() as tmp:
                    make_tree(Path(tmp))
                    for _ in range(3):
                        started = time.perf_counter()
                        session.copy_in(Path(tmp))
                        copy.append(time.perf_counter() - started)
            started = time.perf_counter()
            sandbox.remove(spec)
            teardown.append(time.perf_counter() - started)
    finally:
        sandbox.remove_execution(prefix)
        client.close()

    result = {
        "runs": args.runs,
        "bootstrap_p50_s": round(statistics.median(boot), 4),
        "bootstrap_p95_s": round(percentile(boot, 95), 4),
        "raw_p50_s": round(statistics.median(raw), 4),
        "teardown_p50_s": round(statistics.median(teardown), 4),
        "copy_in_10mb_s": round(statistics.median(copy), 4),
    }
    result["bootstrap_vs_raw_ratio"] = round(result["bootstrap_p50_s"] / result["raw_p50_s"], 2)

    rows = [
        ("bootstrap (create+start+health)", boot),
        ("raw docker run --rm true", raw),
        ("teardown (kill+remove)", teardown),
        ("copy_in 10 MB", copy),
    ]
    print(f"{'measure':34} {'p50 s':>8} {'p95 s':>8} {'min s':>8} {'max s':>8}")
    for name, values in rows:
        print(
            f"{name:34} {statistics.median(values):8.3f} {percentile(values, 95):8.3f} "
            f"{min(values):8.3f} {max(values):8.3f}"
        )
    print(f"{'bootstrap p50 / raw p50':34} {result['bootstrap_vs_raw_ratio']:8.2f}")
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
