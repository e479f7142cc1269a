"""A started, healthy task container: copy the working copy in, run checks, read reports.

What a check leaves in the container is the repository's doing, so :meth:`DockerSession.
read_file` treats it as hostile: it streams Docker's archive and stops at
:data:`MAX_REPORT_BYTES` (a directory's archive is the whole tree, whatever Docker's stat
says), and something that is not a small regular file is the verification's failure
(``VerificationError`` naming the path and the limit), never the infrastructure's.
"""

from __future__ import annotations

import fnmatch
import io
import os
import shlex
import tarfile
import tempfile
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import IO, Any

from runner.errors import InfrastructureError, RunnerError, VerificationError
from runner.ports import CommandResult, ContainerSpec, LineSink
from runner.sandbox.command import QUOTA_ENV, WORKDIR, exec_quiet, run_command
from runner.sandbox.engine import NotFoundError, call, translate

UID = 10001
SPOOL_BYTES = 32 * 1024 * 1024
"""Archives up to this size are built in memory; larger ones spill to a temporary file."""
MAX_REPORT_BYTES = 8 * 1024 * 1024
"""The largest file ``read_file`` returns. Its callers read reports (coverage JSON), which a
JSON parser holds at some 25 times their size, so anything larger is refused rather than
read; real reports are well under it (coverage.py's JSON of 100,000 statements is about
3 MiB, an Istanbul json-summary a few kilobytes)."""
TAR_SLACK_BYTES = 64 * 1024
"""What Docker's one-file archive may hold beyond the file (headers, padding, end blocks)."""
_MIB = 1024 * 1024
# Docker's path stat gives Go's os.FileMode: these bits mark anything but a regular file.
_GO_MODE_DIR = 1 << 31
_GO_MODE_SYMLINK = 1 << 27
_GO_MODE_TYPE = (_GO_MODE_DIR | _GO_MODE_SYMLINK | 1 << 26 | 1 << 25 | 1 << 24 | 1 << 21
                 | 1 << 19)  # device, named pipe, socket, character device, irregular


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
        """A regular file from the container (relative paths are under ``/workspace``);
        None when nothing is there.

        Something other than a regular file (a directory, a link, a pipe), or a file over
        :data:`MAX_REPORT_BYTES`, raises ``VerificationError`` naming the path and the
        limit: the checks made it, so it is their failure, and no retry changes it. At most
        ``MAX_REPORT_BYTES + TAR_SLACK_BYTES`` of the archive is read (plus one chunk).
        """
        full = str(PurePosixPath(WORKDIR) / path) if not path.startswith("/") else path
        what = f"read from {self._name}"
        try:
            stream, stat = call(what, self._api.get_archive, self._name, full)
        except NotFoundError:
            return None
        try:
            _check_stat(full, stat)  # refused before a byte of the archive is read
            return _only_file(full, stream)
        except RunnerError:
            raise
        except Exception as exc:  # noqa: BLE001 - the stream's errors, translated at the edge
            raise translate(exc, what) from None
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()


class _OverBudget(Exception):
    """The archive went past what a report's archive may be."""


class _Capped(io.RawIOBase):
    """A file-like view of an archive stream that refuses to read past ``budget`` bytes:
    the bytes are counted as they arrive, so at most one chunk more is ever held."""

    def __init__(self, chunks: Iterable[bytes], budget: int) -> None:
        super().__init__()
        self._chunks = iter(chunks)
        self._budget = budget
        self._buffer = bytearray()
        self.received = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        size = -1 if size is None else size
        while size < 0 or len(self._buffer) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self.received += len(chunk)
            if self.received > self._budget:
                self._buffer.clear()
                raise _OverBudget
            self._buffer += chunk
        size = len(self._buffer) if size < 0 else min(size, len(self._buffer))
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def drain(self) -> None:
        """Read what is left (the archive's end blocks), so the connection can be reused;
        stop quietly past the budget."""
        try:
            while self.read(TAR_SLACK_BYTES):
                pass
        except _OverBudget:
            pass


def _check_stat(full: str, stat: Mapping[str, Any]) -> None:
    """Refuse, from Docker's stat of ``full``, what is not a small regular file."""
    try:
        mode, size = int(stat.get("mode", 0)), int(stat.get("size", 0))
    except (TypeError, ValueError):
        return  # the archive's own header is checked too
    if mode & _GO_MODE_TYPE:
        raise _unfit(full, _kind(directory=bool(mode & _GO_MODE_DIR),
                                 link=bool(mode & _GO_MODE_SYMLINK)))
    if size > MAX_REPORT_BYTES:
        raise _unfit(full, f"is {size} bytes", size=size)


def _only_file(full: str, stream: Iterable[bytes]) -> bytes | None:
    """The one file of Docker's archive ``stream``, read as it arrives and never past the
    limit; ``_unfit`` when it is not a regular file or is too large."""
    reader = _Capped(stream, MAX_REPORT_BYTES + TAR_SLACK_BYTES)
    try:
        with tarfile.open(fileobj=reader, mode="r|") as tar:
            member = tar.next()
            if member is None:
                return None
            if not member.isfile():
                raise _unfit(full, _kind(directory=member.isdir(), link=member.issym()))
            if member.size > MAX_REPORT_BYTES:
                raise _unfit(full, f"is {member.size} bytes", size=member.size)
            handle = tar.extractfile(member)
            data = handle.read() if handle is not None else None
    except _OverBudget:
        raise _unfit(full, f"is over {MAX_REPORT_BYTES} bytes "
                           f"(its archive was cut after {reader.received} bytes)") from None
    reader.drain()
    return data


def _kind(*, directory: bool, link: bool) -> str:
    if directory:
        return "is a directory"
    return "is a symbolic link" if link else "is not a regular file"


def _unfit(full: str, why: str, *, size: int | None = None) -> VerificationError:
    """The verification's error for a report that cannot be read as one."""
    return VerificationError(
        f"the report {full} {why}: a report must be a regular file of at most "
        f"{MAX_REPORT_BYTES // _MIB} MiB ({MAX_REPORT_BYTES} bytes)",
        details={"path": full, "limitBytes": MAX_REPORT_BYTES,
                 **({} if size is None else {"sizeBytes": size})},
    )
