"""The Aider coding tool: runs the ``aider`` executable on a working copy, non-interactively.

Aider runs from its own environment with nothing of ours: an empty environment plus
``PATH``, a throw-away ``HOME``, the model settings (the API key only as an environment
variable, never in argv) and offline guards. Its working directory, message and history
files live in a temporary directory outside the repository, and it runs with ``--no-git``
so it never reads the repository's ``.aider.conf.yml`` or ``.env`` and never touches
``.git``. A small guard, loaded by Aider's Python through ``PYTHONPATH``, pins Aider's root
to the working copy and refuses any edit outside it (or inside ``.git``); if it cannot be
installed Aider does not run. It also starts Aider's own reports (each reply's usage line,
each litellm error a model call raised) with a mark made for the run: the model's reply is
in the same output and may say anything, so only marked lines are read for usage and for
why a run failed, and they are read as they are printed (:class:`Reports`), not from the
tail the artifact keeps.

Afterwards the change is read with pygit2 (working tree against ``HEAD``, new files
included) into the Operation Artifact.

Aider runs on the host and reads the files it is given, so a repository must not be able
to make it exhaust the host: a task file larger than ``DEVTEAM_LIMITS_MODEL_FILE_BYTES``
is a ``config`` error before Aider starts (a 64 MB file had taken it to 2.3 GB), and the
process runs under ``DEVTEAM_AIDER_MEMORY_MB`` of address space and
``DEVTEAM_AIDER_CPU_SECONDS`` of CPU time; past either the round is a ``resource_limit``
error that names the setting.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import tempfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pygit2

from runner.errors import Classification, InfrastructureError, ToolError
from runner.git.commits import changed_paths, diff_between
from runner.ports import ImplementOutputs, ImplementRequest, LineSink, OperationArtifact
from runner.prompt import build_prompt
from runner.redact import Redactor
from runner.settings import Settings
from runner.toolprocess import ProcessLimits, ToolProcess

STDOUT_LIMIT = 64 * 1024
"""Most characters of Aider's output kept in the artifact (the tail)."""

DENY_PROXY = "http://127.0.0.1:9"
"""Proxy for every host but the model's: nothing listens there, so stray traffic fails fast."""

GUARD_MISSING = 97
"""Exit code of an Aider whose edit guard could not be installed (it then does nothing)."""

_KEY_VARIABLES = {
    "anthropic": "ANTHROPIC_API_KEY",
    "gemini": "GEMINI_API_KEY",
    "deepseek": "DEEPSEEK_API_KEY",
    "openrouter": "OPENROUTER_API_KEY",
}
_FLAGS = [
    *("--yes-always", "--no-git", "--no-auto-commits", "--no-dirty-commits", "--no-gitignore"),
    *("--no-analytics", "--no-check-update", "--no-show-release-notes", "--no-pretty"),
    *("--no-show-model-warnings", "--no-fancy-input", "--no-suggest-shell-commands"),
    *("--no-detect-urls", "--no-auto-lint", "--no-auto-test", "--no-restore-chat-history"),
    *("--map-tokens", "0", "--encoding", "utf-8"),
    # Whole replies carry the server's usage object, so Aider's "Tokens: … sent, …
    # received" line is what the model's server counted (streamed, Aider estimates it with
    # its own tokenizer); nobody watches Aider type.
    "--no-stream",
]
_FIXED_ENV = {
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "TERM": "dumb",
    "NO_COLOR": "1",
    "PYTHONUNBUFFERED": "1",
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    # glibc reserves address space per thread arena: with few arenas RLIMIT_AS measures
    # what Aider uses, not how many cores the host has
    "MALLOC_ARENA_MAX": "2",
}
_OUT_OF_MEMORY = re.compile(r"\bMemoryError\b|Cannot allocate memory|std::bad_alloc")

_GUARD = '''"""DevTeam Runner guard for Aider (loaded as sitecustomize through PYTHONPATH)."""
import os, sys
from pathlib import Path


def _install(root):
    from aider import utils
    from aider.coders import base_coder

    original = base_coder.Coder.allowed_to_edit

    def allowed_to_edit(self, path):
        try:
            inside = Path(self.abs_root_path(path)).resolve().relative_to(root)
        except (OSError, ValueError):
            inside = None
        if inside is None or inside.parts[:1] in ((), (".git",)):
            self.io.tool_error(f"Refused edit outside the working copy: {path}")
            return False
        return original(self, path)

    utils.find_common_root = lambda abs_fnames: str(root)
    base_coder.Coder.allowed_to_edit = allowed_to_edit


def _mark_reports(mark):
    """Aider's own usage line, and a line naming each litellm error a model call raised,
    start with ``mark`` (unknown to the model), so that a model's reply quoting a
    "Tokens: ..." or "litellm.AuthenticationError" line cannot pass for one."""
    from aider.coders import base_coder
    from aider.exceptions import LiteLLMExceptions

    show_usage_report, send = base_coder.Coder.show_usage_report, base_coder.Coder.send

    def marked_usage_report(self):
        if self.usage_report:
            self.usage_report = mark + self.usage_report
        return show_usage_report(self)

    def marked_send(self, *args, **kwargs):
        try:
            return (yield from send(self, *args, **kwargs))
        except Exception as exc:
            if isinstance(exc, LiteLLMExceptions().exceptions_tuple()):
                self.io.tool_output(f"{mark}model error: {type(exc).__name__}")
            raise

    base_coder.Coder.show_usage_report = marked_usage_report
    base_coder.Coder.send = marked_send


if os.environ.get("DEVTEAM_AIDER_ROOT"):
    try:
        _install(Path(os.environ["DEVTEAM_AIDER_ROOT"]).resolve())
    except Exception as exc:
        sys.stderr.write(f"devteam guard not installed ({exc!r}); refusing to run\\n")
        os._exit(97)
    if os.environ.get("DEVTEAM_AIDER_REPORT_MARK"):
        try:
            _mark_reports(os.environ["DEVTEAM_AIDER_REPORT_MARK"])
        except Exception as exc:
            sys.stderr.write(f"devteam report mark not installed ({exc!r})\\n")
'''


class AiderTool:
    """The coding tool: changes a working copy to carry out one task, with the Aider CLI."""

    name = "aider"

    def __init__(
        self,
        settings: Settings,
        redactor: Redactor,
        *,
        edit_format: str | None = None,
        timeout_seconds: float | None = None,
        deny_proxy: str = DENY_PROXY,
    ) -> None:
        self.bin = settings.path(settings.aider.bin)
        self.model = settings.model.name
        self.api_base = settings.model.api_base
        self._api_key = settings.model.api_key
        self.edit_format = edit_format if edit_format is not None else settings.model.edit_format
        self.prices = (max(0.0, settings.model.input_cost_per_million),
                       max(0.0, settings.model.output_cost_per_million))
        self.timeout = float(timeout_seconds or settings.aider.timeout_seconds)
        self.memory_mb = settings.aider.memory_mb
        self.cpu_seconds = settings.aider.cpu_seconds
        self.model_file_bytes = settings.limits.model_file_bytes
        self.deny_proxy = deny_proxy
        self.redactor = redactor.with_secrets([self._api_key] if self._api_key else [])

    def implement(
        self,
        request: ImplementRequest,
        *,
        on_line: LineSink | None = None,
        cancel: threading.Event | None = None,
    ) -> OperationArtifact:
        """Run Aider for ``request`` to completion (or timeout, or ``cancel``) and describe
        the change. Never raises for a tool failure: a failed run is an artifact with
        ``success=False`` and an ``error`` classified ``tool`` (or ``cancelled``).

        ``on_line`` gets each redacted output line as it is printed, from a reader thread.
        ``cancel`` (or the timeout) kills Aider's whole process group within ~0.1 s.
        Raises :class:`InfrastructureError` only for our own machinery (no Aider executable,
        the working directory is not the top of a git working copy).
        """
        started = time.monotonic()
        root = _working_copy(request.workdir)
        refused = unsafe_files(root, request.files)
        if refused:
            message = f"refused task files outside the working copy: {', '.join(refused)}"
            return self._failed(request, started, Classification.TOOL, message)
        oversized = oversized_files(root, request.files, self.model_file_bytes)
        if oversized:
            message = (
                f"task files larger than {self.model_file_bytes:,} bytes are not given to the "
                f"model (DEVTEAM_LIMITS_MODEL_FILE_BYTES): {', '.join(oversized)}"
            )
            return self._failed(request, started, Classification.CONFIG, message)
        if cancel is not None and cancel.is_set():
            return self._failed(request, started, Classification.CANCELLED, "cancelled")
        if not os.access(self.bin, os.X_OK):
            raise InfrastructureError(f"aider executable not found at {self.bin}")
        mark = f"@@devteam-{secrets.token_hex(8)}@@ "
        reports = Reports(mark, on_line)
        with tempfile.TemporaryDirectory(prefix="devteam-aider-") as tmp:
            command, env = self._prepare(Path(tmp), root, request)
            env["DEVTEAM_AIDER_REPORT_MARK"] = mark
            # rich wraps at 80 columns: a usage line (marked, or with cache figures) would
            # break in two and its cost no longer read
            env["COLUMNS"] = "400"
            limits = ProcessLimits(memory_bytes=self.memory_mb * 1024 * 1024,
                                   cpu_seconds=self.cpu_seconds)
            # the marked lines pass redaction on their own: a key block the model opened
            # and never closed must not hide them
            outcome = ToolProcess(
                command, env, Path(tmp) / "work", self.redactor.trusting(mark), on_line=reports,
                limit=STDOUT_LIMIT, limits=limits,
            )
            outcome.wait(self.timeout, cancel)
        stdout = genuine_usage(outcome.output(), mark)
        usage = list(reports.usage)
        if outcome.returncode == GUARD_MISSING:
            raise InfrastructureError(f"the edit guard could not be installed in aider: {stdout}")
        if outcome.cancelled:
            return self._failed(request, started, Classification.CANCELLED, "cancelled",
                                stdout, usage)
        if outcome.timed_out:
            message = f"aider timed out after {self.timeout:g} s"
            return self._failed(request, started, Classification.TOOL, message, stdout, usage)
        if outcome.cpu_exceeded:
            message = (f"aider used up its CPU time ({self.cpu_seconds} s, "
                       "DEVTEAM_AIDER_CPU_SECONDS) and was stopped")
            return self._failed(request, started, Classification.RESOURCE_LIMIT, message,
                                stdout, usage)
        if outcome.returncode != 0 and _OUT_OF_MEMORY.search(stdout):
            message = (f"aider ran out of memory ({self.memory_mb} MiB, DEVTEAM_AIDER_MEMORY_MB) "
                       "and was stopped")
            return self._failed(request, started, Classification.RESOURCE_LIMIT, message,
                                stdout, usage)
        patch, files, lines = working_tree_change(root)
        outputs = ImplementOutputs(
            diff=self.redactor.redact(patch),
            stdout=stdout,
            files_modified=files,
            lines_changed=lines,
            usage_lines=usage,
        )
        error: ToolError | None = None
        details = {"exitCode": outcome.returncode, "outputTail": stdout[-2000:]}
        if outcome.returncode != 0:
            error = ToolError(f"aider exited with code {outcome.returncode}", details=details)
        elif not files:
            classification, message = failure_kind(reports.model_errors)
            error = ToolError(message, details=details, classification=classification)
        return self._artifact(request, started, outputs, error.to_dict() if error else None)

    def _prepare(
        self, tmp: Path, root: Path, request: ImplementRequest
    ) -> tuple[list[str], dict[str, str]]:
        for sub in ("home/.aider/caches", "guard", "work"):
            (tmp / sub).mkdir(parents=True)
        # A non-empty model-info cache stops Aider fetching it from GitHub.
        (tmp / "home/.aider/caches/model_prices_and_context_window.json").write_text(
            '{"devteam-offline": {}}', encoding="utf-8"
        )
        (tmp / "guard/sitecustomize.py").write_text(_GUARD, encoding="utf-8")
        prompt = build_prompt(request, redactor=self.redactor)
        (tmp / "message.md").write_text(prompt, encoding="utf-8")
        command = [str(self.bin), *_FLAGS, "--model", self.model]
        metadata = model_metadata(self.model, *self.prices)
        if metadata is not None:
            (tmp / "model-metadata.json").write_text(metadata, encoding="utf-8")
            command += ["--model-metadata-file", str(tmp / "model-metadata.json")]
        if self.edit_format:
            command += ["--edit-format", self.edit_format]
        if self.api_base:
            command += ["--openai-api-base", self.api_base]
        for name, path in (("chat", "chat.md"), ("input", "input.txt"), ("llm", "llm.txt")):
            command += [f"--{name}-history-file", str(tmp / path)]
        command += ["--message-file", str(tmp / "message.md")]
        for rel in request.files:
            if (root / rel).is_file():
                command += ["--file", str(root / rel)]
        provider = self.model.split("/", 1)[0] if "/" in self.model else "openai"
        api_host = urlsplit(self.api_base).hostname if self.api_base else None
        env = {
            **_FIXED_ENV,
            "PATH": os.environ.get("PATH", os.defpath),
            "HOME": str(tmp / "home"),
            "PYTHONPATH": str(tmp / "guard"),
            "DEVTEAM_AIDER_ROOT": str(root),
            "HTTP_PROXY": self.deny_proxy,
            "HTTPS_PROXY": self.deny_proxy,
            "ALL_PROXY": self.deny_proxy,
            "NO_PROXY": api_host or "",
        }
        if self._api_key:
            env[_KEY_VARIABLES.get(provider, "OPENAI_API_KEY")] = self._api_key
        return command, env

    def _failed(
        self,
        request: ImplementRequest,
        started: float,
        classification: Classification,
        message: str,
        stdout: str = "",
        usage: list[str] | None = None,
    ) -> OperationArtifact:
        outputs = ImplementOutputs(diff="", stdout=stdout, files_modified=[], lines_changed=0,
                                   usage_lines=usage or [])
        error = {"classification": str(classification), "message": self.redactor(message)}
        return self._artifact(request, started, outputs, error)

    def _artifact(
        self,
        request: ImplementRequest,
        started: float,
        outputs: ImplementOutputs,
        error: dict[str, Any] | None,
    ) -> OperationArtifact:
        return OperationArtifact(
            operation="implement",
            task_id=request.task_id,
            tool=self.name,
            success=error is None,
            duration=round(time.monotonic() - started, 3),
            outputs=outputs,
            error=error,
        )


_MODEL_ERROR = "model error: "
"""After the guard's mark: the name of the litellm exception a model call raised."""


class Reports:
    """The sink of Aider's output lines (redacted, in order, from the reader thread): keeps
    what the guard marked as Aider's own, passes every line on to ``on_line`` unmarked.

    Read as the output streams, not from the tail kept in the artifact: with several model
    calls the first usage lines are long gone from it. And only marked lines count: the
    model's reply is in the output too, and may say anything."""

    def __init__(self, mark: str, on_line: LineSink | None) -> None:
        self._mark, self._on_line = mark, on_line
        self.usage: list[str] = []
        """Aider's ``Tokens: … sent, … received. [Cost: …]`` lines, one per model reply."""
        self.model_errors: list[str] = []
        """The litellm exceptions (class names) model calls raised since the last reply."""

    def __call__(self, line: str) -> None:
        if line.startswith(self._mark):
            report = line[len(self._mark) :]
            if report.startswith(_MODEL_ERROR):
                self.model_errors.append(report[len(_MODEL_ERROR) :].strip())
            else:
                self.usage.append(report)
                self.model_errors.clear()  # the model answered after them: a retry worked
        if self._on_line is not None:
            try:
                self._on_line(genuine_usage(line, self._mark))
            except Exception:  # noqa: BLE001 - a broken sink must not stop the reading
                self._on_line = None


def genuine_usage(text: str, mark: str) -> str:
    """``text`` with Aider's own reports (lines starting with the guard's ``mark``)
    unmarked, and any other line starting ``Tokens:`` (a model's reply quoting one, to
    inflate a customer's usage) quoted with ``> ``, so that only Aider's own lines read as
    usage to whoever reads the output."""
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if line.startswith(mark):
            lines[i] = line[len(mark):]
        elif line.startswith("Tokens:"):
            lines[i] = "> " + line
    return "\n".join(lines)


def model_metadata(model: str, input_per_million: float,
                   output_per_million: float) -> str | None:
    """Aider's model metadata (litellm's format) giving ``model`` the configured prices, so
    the cost Aider prints after each reply is known; None when no price is configured."""
    if input_per_million <= 0 and output_per_million <= 0:
        return None
    entry = {
        "input_cost_per_token": input_per_million / 1_000_000,
        "output_cost_per_token": output_per_million / 1_000_000,
        "max_input_tokens": 128_000,
        "max_output_tokens": 16_384,
        "mode": "chat",
        "litellm_provider": model.split("/", 1)[0] if "/" in model else "openai",
    }
    return json.dumps({model: entry})


_MODEL_REJECTED = frozenset(
    {"AuthenticationError", "PermissionDeniedError", "NotFoundError", "BadRequestError"})
_MODEL_UNAVAILABLE = frozenset({
    "APIConnectionError", "InternalServerError", "ServiceUnavailableError", "RateLimitError",
    "Timeout", "APIError",
})  # fmt: skip


def failure_kind(model_errors: Iterable[str]) -> tuple[Classification, str]:
    """Why a run that changed nothing failed (Aider exits 0 anyway), from the litellm errors
    the guard saw model calls raise after the model's last reply (:class:`Reports`): the
    model endpoint refused us (``config``), was unreachable (``transient``, after Aider's
    own retries), or the model made no usable edit (``tool``). Never from the output's
    text: the model's reply is in it, and a reply saying "litellm.AuthenticationError"
    would otherwise end the whole execution."""
    errors = set(model_errors)
    if errors & _MODEL_REJECTED:
        return Classification.CONFIG, "the model endpoint rejected the request (DEVTEAM_MODEL_*)"
    if errors & _MODEL_UNAVAILABLE:
        return Classification.TRANSIENT, "the model endpoint was unreachable or failing"
    return Classification.TOOL, "aider made no change to the working copy"


def unsafe_files(workdir: Path, files: Iterable[str]) -> list[str]:
    """The task files that are absolute, climb with ``..``, point into ``.git`` or resolve
    (through symlinks) outside ``workdir``, and those no file can be named (a NUL byte,
    which the task list lets through and ``resolve`` refuses with ValueError)."""
    root = workdir.resolve()
    bad = []
    for name in files:
        if "\0" in name:
            bad.append(name)
            continue
        path = PurePosixPath(name)
        target = (root / name).resolve()
        if (
            not name
            or path.is_absolute()
            or Path(name).is_absolute()
            or ".." in path.parts
            or not target.is_relative_to(root)
            or target == root
            or target.relative_to(root).parts[0] == ".git"
        ):
            bad.append(name)
    return bad


def oversized_files(workdir: Path, files: Iterable[str], limit: int) -> list[str]:
    """``"name (N bytes)"`` for each task file (already checked to be inside ``workdir``)
    larger than ``limit`` bytes; files that do not exist yet are fine."""
    found = []
    for name in files:
        try:
            size = (workdir / name).stat().st_size
        except OSError:
            continue
        if size > limit:
            found.append(f"{name} ({size:,} bytes)")
    return found


def _working_copy(workdir: Path) -> Path:
    """``workdir`` resolved, after checking it is the top of a git working copy."""
    try:
        repo = pygit2.Repository(str(workdir))
    except (pygit2.GitError, KeyError) as exc:
        raise InfrastructureError(f"not a git working copy: {workdir} ({exc})") from None
    root = workdir.resolve()
    if repo.workdir is None or Path(repo.workdir).resolve() != root:
        raise InfrastructureError(f"not the top of a git working copy: {workdir}")
    return root


def working_tree_change(workdir: Path) -> tuple[str, list[str], int]:
    """``(unified patch, paths changed, lines added + deleted)`` of the working tree against
    ``HEAD``, new untracked (not ignored) files included."""
    try:
        diff = diff_between(pygit2.Repository(str(workdir)), "HEAD", None)
        return diff.patch or "", changed_paths(diff), diff.stats.insertions + diff.stats.deletions
    except pygit2.GitError as exc:
        raise InfrastructureError(f"cannot read the change in {workdir}: {exc}") from None
