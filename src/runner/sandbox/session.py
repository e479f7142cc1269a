"""A started, healthy task container: copy the working copy in, run checks, read reports."""

from __future__ import annotations

import fnmatch
import io
import os
import shlex
import tarfile
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import IO, Any

from runner.errors import InfrastructureError
from runner.ports import CommandResult, ContainerSpec, LineSink
from runner.sandbox.command import QUOTA_ENV, WORKDIR, exec_quiet, run_command
from runner.sandbox.engine import NotFoundError, call

UID = 10001
SPOOL_BYTES = 32 * 1024 * 1024
"""Archives up to this size are built in memory; larger ones spill to a temporary file."""
MAX_READ_BYTES = 64 * 1024 * 1024
"""``read_file`` refuses larger files (reports are small; a huge one is a mistake)."""


def _walk(source: Path, exclude: Sequence[str],
          skip_top: Sequence[str] = ()) -> Iterator[tuple[Path, str]]:
    """``(path, archive name)`` of everything under ``source``, skipping excluded names (at
    any depth) and the top-level entries ``skip_top``."""

    def skipped(name: str) -> bool:
        return any(fnmatch.fnmatch(name, pattern) for pattern in exclude)

    for top, dirs, files in os.walk(source, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not skipped(d))
        rel = Path(top).relative_to(source).as_posix()
        if rel == ".":
            dirs[:] = [d for d in dirs if d not in skip_top]
        kept = [f for f in files if not skipped(f) and not (rel == "." and f in skip_top)]
        prefix = "" if rel == "." else rel + "/"
        for name in dirs + sorted(kept):
            yield Path(top) / name, prefix + name


def _owned(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = UID
    info.uname = info.gname = ""
    return info


def build_archive(source: Path, exclude: Sequence[str], skip_top: Sequence[str] = ()) -> IO[bytes]:
    """A tar of ``source``'s contents, owned by the sandbox user, positioned at 0.

    Symbolic links are archived as links, never followed (a link cannot pull host files in).
    """
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115 - returned
    with tarfile.open(fileobj=spool, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, arcname in _walk(source, exclude, skip_top):
            tar.add(path, arcname=arcname, recursive=False, filter=_owned)
    spool.seek(0)
    return spool


class DockerSession:
    """The ``SandboxSession`` of one task container (see ``runner.ports``).

    ``workspace_quota_mb`` caps what ``/workspace`` may hold while a command runs (the exec
    wrapper enforces it; None leaves the wrapper's default, 2048 MiB).
    """

    def __init__(
        self,
        api: Any,
        name: str,
        spec: ContainerSpec,
        container_id: str,
        *,
        workspace_quota_mb: int | None = None,
    ) -> None:
        self._api = api
        self._name = name
        self.spec = spec
        self.container_id = container_id
        self.workspace_quota_mb = workspace_quota_mb

    @property
    def name(self) -> str:
        return self._name

    def copy_in(self, source: Path, *, exclude: Sequence[str] = (".git",)) -> None:
        """Replace ``/workspace`` with the contents of ``source``.

        Names matching any ``exclude`` pattern (at any depth) are left out. Files end up
        owned by the sandbox user. Dependency caches mounted into ``/workspace`` (the spec's
        ``mounts``) are neither cleared nor copied over. Raises ``InfrastructureError`` when
        ``source`` is not a directory or the copy fails.
        """
        if not source.is_dir():
            raise InfrastructureError(f"working copy {source} is not a directory")
        mounted = [m.path for m in self.spec.mounts]
        keep = " ".join(f"! -name {shlex.quote(p)}" for p in mounted)
        # A command may have left unreadable directories; make everything removable first.
        clear = [
            "sh",
            "-c",
            (f"find {WORKDIR} -mindepth 1 -maxdepth 1 {keep} -exec chmod -R u+rwX {{}} + "
             f"2>/dev/null; find {WORKDIR} -mindepth 1 -maxdepth 1 {keep} -exec rm -rf {{}} +"),
        ]
        if exec_quiet(self._api, self._name, clear) != 0:
            raise InfrastructureError(f"could not clear {WORKDIR} in {self._name}")
        archive = build_archive(source, exclude, mounted)
        try:
            what = f"copy into {self._name}"
            ok = call(what, self._api.put_archive, self._name, WORKDIR, archive)
        finally:
            archive.close()
        if not ok:
            raise InfrastructureError(f"Docker refused the copy into {self._name}")

    def run(
        self,
        command: str,
        *,
        timeout: float,
        on_line: LineSink | None = None,
        cancel: threading.Event | None = None,
        env: Mapping[str, str] | None = None,
    ) -> CommandResult:
        """Run a shell command in ``/workspace`` as the non-root user, streaming its lines.

        See :func:`runner.sandbox.command.run_command` for the contract. A command that
        fills ``/workspace`` past the quota is killed; its tail then ends with
        ``output.DISK_NOTE`` and ``classify`` calls it ``resource_limit``.
        """
        variables = dict(env or {})
        if self.workspace_quota_mb is not None:
            variables[QUOTA_ENV] = str(self.workspace_quota_mb)
        return run_command(
            self._api,
            self._name,
            command,
            timeout=timeout,
            on_line=on_line,
            cancel=cancel,
            env=variables,
        )

    def read_file(self, path: str) -> bytes | None:
        """A regular file from the container (relative paths are under ``/workspace``).

        None when it does not exist or is not a regular file.
        """
        full = str(PurePosixPath(WORKDIR) / path) if not path.startswith("/") else path
        try:
            stream, stat = call(f"read from {self._name}", self._api.get_archive, self._name, full)
        except NotFoundError:
            return None
        if int(stat.get("size", 0)) > MAX_READ_BYTES:
            raise InfrastructureError(f"{full} in {self._name} is larger than {MAX_READ_BYTES}")
        data = b"".join(stream)
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            member = tar.next()
            if member is None or not member.isfile():
                return None
            handle = tar.extractfile(member)
            return handle.read() if handle is not None else None
