"""Building the sandbox images from ``containers/``, offline.

The base (a debootstrapped Debian with the tools) is made by ``containers/base/build.sh``
when missing; the runner image is built ``FROM`` it with the network off, and only when
the content of ``containers/base`` and ``containers/runner`` (plus the base's name) hashed
differently from the ``devteam.content-hash`` label of the existing image.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from runner.dockerhost import docker_base_url
from runner.errors import InfrastructureError, RunnerError
from runner.sandbox.engine import NotFoundError, call
from runner.settings import PROJECT_ROOT, Settings

HASH_LABEL = "devteam.content-hash"
BASE_HASH_LABEL = "devteam.base-hash"
"""Label of our own base image: the hash of the script that made it."""
CONTAINERS = PROJECT_ROOT / "containers"
HASHED_DIRS = ("base", "runner")
"""What the runner image is made of; ``containers/service`` does not affect it."""
BASE_BUILD_TIMEOUT = 1800


class BuildReport(msgspec.Struct, frozen=True, kw_only=True):
    image: str
    base: str
    content_hash: str
    base_built: bool
    image_built: bool


def content_hash(base: str, root: Path = CONTAINERS) -> str:
    """sha256 over the files (paths, modes, bytes) the runner image is built from."""
    digest = hashlib.sha256(f"base={base}\n".encode())
    for sub in HASHED_DIRS:
        for path in sorted((root / sub).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                rel = path.relative_to(root).as_posix()
                executable = os.access(path, os.X_OK)
                digest.update(f"{rel}\0{int(executable)}\0".encode())
                digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:32]


def _inspect(api: Any, name: str) -> dict[str, Any] | None:
    try:
        info = call(f"inspect image {name}", api.inspect_image, name)
    except NotFoundError:
        return None
    return dict(info)


def _image_labels(api: Any, name: str) -> dict[str, str] | None:
    info = _inspect(api, name)
    return None if info is None else dict(info.get("Config", {}).get("Labels") or {})


def _drop_replaced(api: Any, old: dict[str, Any] | None, image: str) -> None:
    """Remove the image a rebuild replaced, unless a container still uses it."""
    new = _inspect(api, image)
    if old is None or new is None or old["Id"] == new["Id"]:
        return
    with contextlib.suppress(RunnerError):
        call(f"remove replaced image {old['Id'][:19]}", api.remove_image, old["Id"])


def ensure_base(api: Any, settings: Settings, base: str, log: Callable[[str], None]) -> bool:
    """Make ``base`` if it is missing: our own base by script, any other by a pull.

    Our own base carries the hash of ``containers/base/build.sh`` as a label and is made
    again when the script changed (new tools for the sandbox). Returns whether something
    was made. Raises ``InfrastructureError`` when it cannot be.
    """
    script = CONTAINERS / "base" / "build.sh"
    script_hash = hashlib.sha256(script.read_bytes()).hexdigest()[:16]
    found = _image_labels(api, base)
    if found is not None and (
        base != settings.sandbox.base_image or found.get(BASE_HASH_LABEL) == script_hash
    ):
        return False
    if base != settings.sandbox.base_image:
        log(f"pulling {base}")
        repo, _, tag = base.partition(":")
        call(f"pull {base}", api.pull, repo, tag=tag or "latest")
        return True
    log(f"building {base} with {script.relative_to(PROJECT_ROOT)} (a few minutes, once)")
    env = {**os.environ, "DOCKER_HOST": docker_base_url(settings), "BASE_HASH": script_hash,
           "FORCE": "1"}
    done = subprocess.run(
        ["bash", str(script), base],
        env=env,
        capture_output=True,
        text=True,
        timeout=BASE_BUILD_TIMEOUT,
        check=False,
    )
    for line in done.stderr.splitlines():
        log(line)
    if done.returncode != 0:
        raise InfrastructureError(
            f"building the base image {base} failed (exit {done.returncode})",
            details={"tail": done.stderr[-2000:]},
        )
    return True


def build_image(
    client: Any,
    settings: Settings,
    *,
    base: str | None = None,
    force: bool = False,
    log: Callable[[str], None] = print,
) -> BuildReport:
    """Make sure ``settings.sandbox.image`` exists and matches ``containers/``.

    Builds the base when missing, then the runner image with ``BASE`` as build argument,
    network ``none``, and the content hash as label; skips the build when the label
    already matches (unless ``force``). Raises ``InfrastructureError`` on a failed build.
    """
    api = client.api
    base = base or settings.sandbox.base_image
    image = settings.sandbox.image
    wanted = content_hash(base)
    base_built = ensure_base(api, settings, base, log)
    previous = _inspect(api, image)
    current = _image_labels(api, image)
    if not force and not base_built and current and current.get(HASH_LABEL) == wanted:
        log(f"{image} is up to date ({wanted[:12]})")
        return BuildReport(
            image=image, base=base, content_hash=wanted, base_built=False, image_built=False
        )
    log(f"building {image} from {base} ({wanted[:12]})")
    stream = call(
        f"build {image}",
        api.build,
        path=str(CONTAINERS / "runner"),
        tag=image,
        buildargs={"BASE": base},
        labels={HASH_LABEL: wanted},
        network_mode="none",
        pull=False,
        rm=True,
        forcerm=True,
        decode=True,
    )
    error = ""
    try:
        for chunk in stream:
            error = error or str(chunk.get("error", "")).strip()
            text = str(chunk.get("stream", "")).rstrip()
            if text.startswith("Step "):
                log(text)
    except Exception as exc:  # noqa: BLE001 - the build stream is read at the edge
        error = error or type(exc).__name__
    if error:
        raise InfrastructureError(f"building {image} failed: {error[:500]}")
    _drop_replaced(api, previous, image)
    return BuildReport(
        image=image, base=base, content_hash=wanted, base_built=base_built, image_built=True
    )


def image_status(client: Any, settings: Settings) -> tuple[bool, str]:
    """``(ok, detail)`` for ``GET /health``: the runner image exists and matches ``containers/``.

    A stale image still works (ok, with a note); a missing one does not. Never raises.
    """
    image = settings.sandbox.image
    try:
        current = _image_labels(client.api, image)
    except RunnerError as exc:
        return False, exc.message
    if current is None:
        return False, f"{image} missing: run `devteam image build`"
    if current.get(HASH_LABEL) != content_hash(settings.sandbox.base_image):
        return True, f"{image} present but older than containers/ (rebuild with `make image`)"
    return True, f"{image} up to date"
