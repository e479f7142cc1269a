"""Helpers of the sandbox tests (a module of its own: conftest is not importable)."""

from __future__ import annotations

import threading
import time
import uuid

from runner.sandbox import labels as lbl

RUN_PREFIX = f"sbxt-{uuid.uuid4().hex[:6]}"
"""Start of the execution ids of this test run."""


def ours(client, prefix: str = RUN_PREFIX) -> tuple[list[str], list[str]]:
    """Names of containers and volumes whose execution id starts with ``prefix``."""
    selector = {"label": lbl.MANAGED_FILTER}
    containers = [
        c["Names"][0].lstrip("/")
        for c in client.api.containers(all=True, filters=selector)
        if c["Labels"].get(lbl.EXECUTION, "").startswith(prefix)
    ]
    volumes = [
        v["Name"]
        for v in (client.api.volumes(filters=selector).get("Volumes") or [])
        if (v.get("Labels") or {}).get(lbl.EXECUTION, "").startswith(prefix)
    ]
    return containers, volumes


def remove_prefixed(client, prefix: str) -> None:
    containers, volumes = ours(client, prefix)
    for name in containers:
        client.api.remove_container(name, force=True)
    for name in volumes:
        client.api.remove_volume(name, force=True)


def kill_when_running(client, name: str, killed: list[str], stop: threading.Event) -> None:
    """Kill the first running container called ``name`` (once), recording its id."""
    while not stop.is_set() and not killed:
        for c in client.api.containers(filters={"name": f"^/{name}$", "status": "running"}):
            client.api.kill(c["Id"])
            killed.append(c["Id"])
            return
        time.sleep(0.02)
