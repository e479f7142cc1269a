"""Setup benchmark: installing a real project's dependencies cold, finding them cached, and
what a cached environment adds to a task's VERIFY container.

    .venv/bin/python bench/setup.py [--runs 5] [--json]

For each real project of ``tests/fixtures_projects`` (is-number: ``npm ci`` of mocha;
python-slugify: ``pip install -e .`` with text-unidecode), in one run:
- cold: ``Installer.ensure`` with an empty cache (setup container, egress proxy, the real
  registries through it, the cache written);
- warm: ``Installer.ensure`` again (a cache hit: nothing runs);
- verify bring-up with the cache: ``DockerSandbox.session`` + ``copy_in`` of the project with
  the cached volumes mounted, against the same without mounts (the raw baseline, measured
  alternately in the same run); the difference is what the cache costs a VERIFY.
Goal: a cache hit costs at most 1 s whatever the cold time. Needs the package registries
(through the proxy) for the cold runs. Prints a table and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

_HERE = Path(__file__).resolve().parent
if sys.path and Path(sys.path[0] or ".").resolve() == _HERE:
    sys.path.pop(0)  # bench/runner.py must not shadow the ``runner`` package
sys.path.append(str(_HERE))

from common import emit_json, load_average, note, print_table, rnd  # noqa: E402
from runner.ports import ContainerSpec  # noqa: E402
from runner.sandbox import DockerSandbox, build_image, make_client  # noqa: E402
from runner.settings import get_settings  # noqa: E402
from runner.setup import DepsCache, Installer, plan_setup  # noqa: E402

FIXTURES = _HERE.parent / "tests" / "fixtures_projects"
PROJECTS = ("is-number", "python-slugify")
GOAL_SECONDS = 1.0


def bring_up(sandbox: DockerSandbox, spec: ContainerSpec, workdir: Path) -> float:
    """Seconds from nothing to a VERIFY container holding the working copy."""
    started = time.perf_counter()
    session = sandbox.session(spec)
    session.copy_in(workdir)
    elapsed = time.perf_counter() - started
    sandbox.remove(spec)
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="cold/warm rounds per project")
    parser.add_argument("--json", action="store_true", help="End with one JSON line.")
    args = parser.parse_args()

    settings = get_settings()
    client = make_client(settings)
    image = build_image(client, settings, log=note).image
    sandbox = DockerSandbox(client, settings=settings, image=image)
    cache = DepsCache(client.api, max_bytes_per_customer=50 * 2**30, per_project=3,
                      max_age_seconds=3600)
    installer = Installer(settings, sandbox, cache)
    run_id = uuid.uuid4().hex[:8]
    results: dict[str, dict[str, float | int | str | None]] = {}
    rows = []
    try:
        for name in PROJECTS:
            with tempfile.TemporaryDirectory() as tmp:
                workdir = Path(tmp) / name
                shutil.copytree(FIXTURES / name, workdir)
                plan = plan_setup(workdir)
                cold, warm = [], []
                size = 0
                for i in range(args.runs):
                    customer = f"bench-{run_id}-{i}"  # a fresh customer: an empty cache
                    spec = ContainerSpec(customer_id=customer, project_id=f"{customer}/{name}",
                                         execution_id=f"bench-{run_id}", task_id=name,
                                         attempt=0)
                    note(f"{name}: cold setup {i + 1}/{args.runs}")
                    first = installer.ensure(spec, plan, workdir)
                    assert not first.cached
                    cold.append(first.seconds)
                    size = first.bytes
                    started = time.perf_counter()
                    again = installer.ensure(spec, plan, workdir)
                    warm.append(time.perf_counter() - started)
                    assert again.cached
                    cache.discard(customer, spec.project_id, first.key, plan.cache_paths)
                customer = f"bench-{run_id}-verify"
                setup_spec = ContainerSpec(customer_id=customer, project_id=f"{customer}/{name}",
                                           execution_id=f"bench-{run_id}", task_id=name,
                                           attempt=0)
                installed = installer.ensure(setup_spec, plan, workdir)
                plain_spec = ContainerSpec(customer_id=customer, project_id=setup_spec.project_id,
                                           execution_id=f"bench-{run_id}", task_id=name,
                                           attempt=1)
                mounted_spec = ContainerSpec(customer_id=customer,
                                             project_id=setup_spec.project_id,
                                             execution_id=f"bench-{run_id}", task_id=name,
                                             attempt=2, mounts=installed.mounts())
                plain, mounted = [], []
                bring_up(sandbox, plain_spec, workdir)  # warm the engine for both kinds
                for _ in range(args.runs * 2):
                    plain.append(bring_up(sandbox, plain_spec, workdir))
                    mounted.append(bring_up(sandbox, mounted_spec, workdir))
                cache.discard(customer, setup_spec.project_id, installed.key, plan.cache_paths)
            added = statistics.median(mounted) - statistics.median(plain)
            hit = statistics.median(warm)
            results[name] = {
                "tool": plan.tool,
                "bytes": size,
                "cold_p50_s": rnd(statistics.median(cold), 3),
                "cold_max_s": rnd(max(cold), 3),
                "warm_p50_s": rnd(hit, 4),
                "warm_max_s": rnd(max(warm), 4),
                "verify_plain_p50_s": rnd(statistics.median(plain), 3),
                "verify_cached_p50_s": rnd(statistics.median(mounted), 3),
                "verify_added_s": rnd(added, 3),
                "cold_over_warm": rnd(statistics.median(cold) / hit, 1) if hit else None,
            }
            cache_hit_cost = hit + max(added, 0.0)
            results[name]["hit_cost_s"] = rnd(cache_hit_cost, 3)
            results[name]["goal_met"] = cache_hit_cost <= GOAL_SECONDS
            rows.append((name, plan.tool, f"{size / 2**20:.0f} MiB", statistics.median(cold),
                         hit, statistics.median(plain), statistics.median(mounted), added,
                         "yes" if cache_hit_cost <= GOAL_SECONDS else "NO"))
    finally:
        sandbox.remove_execution(f"bench-{run_id}")
        client.close()

    print_table(
        f"Setup: cold vs cached, and what the cache adds to a VERIFY bring-up "
        f"(runs={args.runs}, load {load_average()})",
        ["project", "tool", "env", "cold p50 s", "warm p50 s", "verify plain s",
         "verify cached s", "added s", "hit ≤ 1 s"],
        rows,
        footnotes=[
            "cold: setup container + egress proxy + registry downloads + cache written",
            "warm: the same call again, a cache hit (nothing runs)",
            ("verify plain/cached: session + copy_in without / with the cached volumes "
             "mounted, alternated in the same run; added = cached - plain (p50)"),
            "hit cost = warm + added; goal ≤ 1 s",
        ],
    )
    if args.json:
        emit_json({"bench": "setup", "runs": args.runs, "load": load_average(),
                   "projects": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
