"""An in-memory stand-in for the volume calls of docker's ``APIClient``.

Only what ``runner.setup.cache.DepsCache`` uses: ``create_volume``, ``inspect_volume``,
``remove_volume`` and ``volumes``. Missing volumes raise ``docker.errors.NotFound`` like the
real client (``runner.sandbox.engine.call`` turns that into ``NotFoundError``). Every call
is recorded so a test can see what happened.
"""

from __future__ import annotations

from typing import Any

import docker.errors


class FakeVolumes:
    def __init__(self) -> None:
        self.volumes_by_name: dict[str, dict[str, str]] = {}
        """Volume name → labels."""
        self.calls: list[tuple[str, str]] = []

    # -- the APIClient surface -----------------------------------------------------------
    def create_volume(self, name: str, driver: str | None = None, driver_opts: Any = None,
                      labels: dict[str, str] | None = None) -> dict[str, Any]:
        self.calls.append(("create", name))
        # like Docker: creating an existing volume returns it unchanged
        self.volumes_by_name.setdefault(name, dict(labels or {}))
        return self._info(name)

    def inspect_volume(self, name: str) -> dict[str, Any]:
        self.calls.append(("inspect", name))
        if name not in self.volumes_by_name:
            raise docker.errors.NotFound(f"get {name}: no such volume")
        return self._info(name)

    def remove_volume(self, name: str, force: bool = False) -> None:
        self.calls.append(("remove", name))
        if name not in self.volumes_by_name:
            raise docker.errors.NotFound(f"get {name}: no such volume")
        del self.volumes_by_name[name]

    def volumes(self, filters: dict[str, list[str]] | None = None) -> dict[str, Any]:
        self.calls.append(("list", ""))
        wanted = [f.partition("=") for f in (filters or {}).get("label", [])]
        found = [
            self._info(name) for name, labels in self.volumes_by_name.items()
            if all(labels.get(k) == v for k, _, v in wanted)
        ]
        return {"Volumes": found or None, "Warnings": None}

    # -- for tests -----------------------------------------------------------------------
    def add(self, name: str, labels: dict[str, str] | None = None) -> None:
        self.volumes_by_name[name] = dict(labels or {})

    def names(self) -> set[str]:
        return set(self.volumes_by_name)

    def _info(self, name: str) -> dict[str, Any]:
        return {"Name": name, "Driver": "local", "Labels": dict(self.volumes_by_name[name]),
                "Mountpoint": f"/var/lib/docker/volumes/{name}/_data", "Scope": "local"}


class Clock:
    """A settable ``now`` for ``DepsCache``."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.value = start

    def __call__(self) -> float:
        return self.value

    def advance(self, seconds: float) -> None:
        self.value += seconds
