"""Runner benchmark: task-list parse + select, and task-branch preparation (ours vs git).

    .venv/bin/python bench/runner.py [--runs 20] [--commits 300] [--files 400] [--json]

Measures, in one run:
- parse_select_5000: ``TaskList.parse`` + ``select_next`` of ``generate_task_list(5000)``
  (nothing done: the first task is ready), and the same list with 90 % of the leaves done
  (selection has to walk far into the list);
- prep: ``GitWorkspace.refresh`` + ``create_task_branch`` on an existing working copy:
  fetch the per-customer cache from the remote, fetch the working copy from the cache,
  fast-forward the default branch, create and check out ``task/...`` from it;
- git_cli_prep: the ``git`` command line doing the same work in its own mirror and clone
  of the same remote: ``git fetch --prune`` into the mirror, ``git fetch --prune`` from the
  mirror into the clone (with ``main:main``, a fast-forward-only update of the default
  branch), ``git checkout -q -B task/... main``;
- redact_1mb: ``Redactor.redact`` (every token shape plus two configured secrets) over 1 MB
  of mixed log text (code, base64 blobs, UUIDs, a few planted tokens), against the raw
  baseline of one compiled regular expression (one token shape) substituted over the same
  text.
The remote (a bare repository on disk) has ``--commits`` commits over ``--files`` files;
before every round it moves by one commit, so each prep really fetches something. Ours
and git alternate which goes first. Prints a table and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import base64
import gc
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pygit2

_HERE = Path(__file__).resolve().parent
if sys.path and Path(sys.path[0] or ".").resolve() == _HERE:
    sys.path.pop(0)  # this file must not shadow the ``runner`` package
sys.path.append(str(_HERE))

from common import (  # noqa: E402
    emit_json,
    interrupts_raise,
    load_average,
    note,
    print_table,
    rnd,
    stats,
)
from runner.git import GitWorkspace, branch_name  # noqa: E402
from runner.redact import Redactor  # noqa: E402
from runner.settings import load_settings  # noqa: E402
from runner.tasklist import TaskList, generate_task_list, select_next  # noqa: E402

AUTHOR = pygit2.Signature("Bench", "bench@devteam.local")
GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "HOME": "/nonexistent",
    "GIT_AUTHOR_NAME": "Bench",
    "GIT_AUTHOR_EMAIL": "bench@devteam.local",
    "GIT_COMMITTER_NAME": "Bench",
    "GIT_COMMITTER_EMAIL": "bench@devteam.local",
    "PATH": "/usr/bin:/bin:/usr/local/bin",
}


# ---------------------------------------------------------------------------- redaction
def redaction_text(size: int = 1_000_000) -> str:
    """About ``size`` characters of what tool logs look like, with a few secrets in them."""
    rng = random.Random(3)
    parts = [
        "def add(a: float, b: float) -> float:\n    return a + b\n",
        "tests/test_basic.py::test_add PASSED                          [ 50%]",
        "Applied edit to src/calc/basic.py",
        "token=ghp_" + "a1B2c3D4e5" * 4,
        "Authorization: Bearer sk-" + "Zq9" * 16,
        "configured secret here: Xk9pL2mQ7vRt",
        base64.b64encode(rng.randbytes(100_000)).decode(),
    ]
    parts.extend(f"{rng.getrandbits(128):032x}-{i}" for i in range(2000))
    text = "\n".join(parts)
    return (text * (size // len(text) + 1))[:size]


def time_redaction(text: str, runs: int) -> tuple[list[float], list[float]]:
    """(ours, one-regex baseline) in ms; the outputs are checked to have lost the secrets."""
    redactor = Redactor(["Xk9pL2mQ7vRt", "another-configured-secret"])
    baseline = re.compile(r"ghp_[A-Za-z0-9]{36}")
    out = redactor.redact(text)
    if "Xk9pL2mQ7vRt" in out or "ghp_a1B2" in out:
        raise RuntimeError("the redactor let a planted secret through")
    ours, raw = [], []
    for _ in range(runs):
        started = time.perf_counter()
        redactor.redact(text)
        ours.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        baseline.sub("[REDACTED]", text)
        raw.append((time.perf_counter() - started) * 1000)
    return ours, raw


# ---------------------------------------------------------------------------- parse + select
def time_parse_select(text: str, runs: int) -> list[float]:
    TaskList.parse(text)  # warm caches and imports
    times = []
    for _ in range(runs):
        gc.collect()
        started = time.perf_counter()
        task = select_next(TaskList.parse(text))
        times.append((time.perf_counter() - started) * 1000)
        assert task is not None
    return times


# ---------------------------------------------------------------------------- the remote
def git(*args: str, cwd: Path | None = None) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, env=GIT_ENV, capture_output=True,
                          text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def make_remote(path: Path, commits: int, files: int) -> None:
    """A bare repository on ``main``: the first commit adds ``files`` files in 20
    directories (~2 KB each), every later commit changes one to three of them."""
    git("init", "-q", "--bare", "--initial-branch=main", str(path))
    stream: list[bytes] = []
    mark = 0

    def blob(content: bytes) -> int:
        nonlocal mark
        mark += 1
        stream.append(b"blob\nmark :%d\ndata %d\n%s\n" % (mark, len(content), content))
        return mark

    def content(i: int, version: int) -> bytes:
        line = f"module {i} version {version}: " + "x" * 60 + "\n"
        return (line * 30).encode()

    when = 1_700_000_000
    for c in range(commits):
        changed = range(files) if c == 0 else {(c * 7 + k * 131) % files for k in range(1 + c % 3)}
        marks = {i: blob(content(i, c)) for i in changed}
        msg = f"Commit {c}".encode()
        stream.append(b"commit refs/heads/main\n")
        stream.append(b"committer Bench <bench@devteam.local> %d +0000\n" % (when + c))
        stream.append(b"data %d\n%s\n" % (len(msg), msg))
        for i, m in marks.items():
            stream.append(b"M 100644 :%d pkg%02d/module_%04d.py\n" % (m, i % 20, i))
        stream.append(b"\n")
    subprocess.run(["git", "--git-dir", str(path), "fast-import", "--quiet"],
                   input=b"".join(stream), env=GIT_ENV, check=True)


def advance_remote(path: Path, n: int) -> None:
    """One more commit on the remote's main (changes ``UPSTREAM.md``)."""
    repo = pygit2.Repository(str(path))
    parent = repo.references["refs/heads/main"].peel(pygit2.Commit)
    builder = repo.TreeBuilder(parent.tree)
    builder.insert("UPSTREAM.md", repo.create_blob(f"upstream change {n}\n".encode()),
                   pygit2.GIT_FILEMODE_BLOB)
    repo.create_commit("refs/heads/main", AUTHOR, AUTHOR, f"Upstream {n}", builder.write(),
                       [parent.id])


# ---------------------------------------------------------------------------- the two preps
class Ours:
    def __init__(self, root: Path, remote_url: str) -> None:
        settings = load_settings({
            "DEVTEAM_WORKSPACE_ROOT": str(root / "ours"),
            "DEVTEAM_WORKSPACE_ALLOWED_FILE_ROOTS": str(root),
        })
        self.ws = GitWorkspace(settings)
        self.checkout = self.ws.checkout("bench", "bench/prep", "exec-1", remote_url)

    def prep(self, task_id: str, title: str) -> str:
        self.checkout = self.ws.refresh(self.checkout)
        return self.ws.create_task_branch(self.checkout, task_id, title).branch

    def head(self, branch: str) -> str:
        repo = pygit2.Repository(str(self.checkout.path))
        return str(repo.references[f"refs/heads/{branch}"].target)

    def worktree(self) -> Path:
        return Path(self.checkout.path)


class GitCli:
    def __init__(self, root: Path, remote: Path) -> None:
        self.cache = root / "cli" / "cache.git"
        self.work = root / "cli" / "work"
        git("clone", "-q", "--mirror", str(remote), str(self.cache))
        git("clone", "-q", "--branch", "main", str(self.cache), str(self.work))
        git("remote", "set-url", "origin", f"file://{remote}", cwd=self.work)
        git("remote", "add", "cache", str(self.cache), cwd=self.work)
        git("config", "remote.cache.fetch", "+refs/heads/*:refs/remotes/origin/*", cwd=self.work)
        git("checkout", "-q", "-b", "task/start", cwd=self.work)  # HEAD is never main

    def prep(self, branch: str) -> str:
        git("--git-dir", str(self.cache), "fetch", "-q", "--prune", "origin")
        git("fetch", "-q", "--prune", "cache", "+refs/heads/*:refs/remotes/origin/*",
            "main:main", cwd=self.work)
        git("checkout", "-q", "-B", branch, "main", cwd=self.work)
        return branch

    def head(self, branch: str) -> str:
        return git("rev-parse", f"refs/heads/{branch}", cwd=self.work).strip()

    def worktree(self) -> Path:
        return self.work


def time_preps(root: Path, runs: int, commits: int, files: int) -> tuple[list[float], list[float]]:
    remote = root / "remote" / "project.git"
    remote.parent.mkdir(parents=True)
    started = time.perf_counter()
    make_remote(remote, commits, files)
    note(f"remote: {commits} commits, {files} files ({time.perf_counter() - started:.1f} s)")
    ours = Ours(root, f"file://{remote}")
    cli = GitCli(root, remote)
    ours_ms: list[float] = []
    cli_ms: list[float] = []
    for i in range(runs + 1):  # round 0 warms both and is not counted
        advance_remote(remote, i)
        expected = str(pygit2.Repository(str(remote)).references["refs/heads/main"].target)
        task_id, title = f"9.{i}", f"Benchmark task number {i} of the prep run"
        name = branch_name(task_id, title)
        order = ("ours", "cli") if i % 2 == 0 else ("cli", "ours")
        for who in order:
            gc.collect()
            t0 = time.perf_counter()
            got = ours.prep(task_id, title) if who == "ours" else cli.prep(name)
            elapsed = (time.perf_counter() - t0) * 1000
            tool = ours if who == "ours" else cli
            if got != name or tool.head(name) != expected:
                raise RuntimeError(f"{who}: branch {got} does not start at the remote's tip")
            if (tool.worktree() / "UPSTREAM.md").read_text() != f"upstream change {i}\n":
                raise RuntimeError(f"{who}: the working tree is not the new branch's tree")
            if i:
                (ours_ms if who == "ours" else cli_ms).append(elapsed)
    return ours_ms, cli_ms


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="Timed rounds of each measure.")
    parser.add_argument("--commits", type=int, default=300, help="History of the remote.")
    parser.add_argument("--files", type=int, default=400, help="Files in the remote's tree.")
    parser.add_argument("--json", action="store_true", help="End with one JSON line.")
    args = parser.parse_args()

    load_before = load_average()
    try:
        fresh, late, ours, cli = measure(args)
        note("redaction of 1 MB of log text: ours vs one regex")
        with interrupts_raise():
            redact = time_redaction(redaction_text(), max(5, args.runs // 2))
    except KeyboardInterrupt:
        note("interrupted: temporary repositories removed")
        return 130
    emit_report(args, fresh, late, ours, cli, redact, (load_before, load_average()))
    return 0


def measure(args: argparse.Namespace
            ) -> tuple[list[float], list[float], list[float], list[float]]:
    with interrupts_raise():
        note("parse + select on generated 5,000-task lists")
        fresh = time_parse_select(generate_task_list(5000), args.runs)
        late = time_parse_select(generate_task_list(5000, done_fraction=0.9), args.runs)
        tmp = Path(tempfile.mkdtemp(prefix="devteam-bench-runner-"))
        try:
            note("task branch preparation: ours vs git")
            ours, cli = time_preps(tmp, args.runs, args.commits, args.files)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return fresh, late, ours, cli


def emit_report(args: argparse.Namespace, fresh: list[float], late: list[float],
                ours: list[float], cli: list[float], redact: tuple[list[float], list[float]],
                load: tuple[float, float]) -> None:
    s_fresh, s_late, s_ours, s_cli = stats(fresh), stats(late), stats(ours), stats(cli)
    s_red, s_raw = stats(redact[0]), stats(redact[1])
    result = {
        "runs": args.runs,
        "parse_select_5000_ms": rnd(s_fresh["p50"]),
        "parse_select_5000_p95_ms": rnd(s_fresh["p95"]),
        "parse_select_5000_90done_ms": rnd(s_late["p50"]),
        "prep_ms": rnd(s_ours["p50"]),
        "prep_p95_ms": rnd(s_ours["p95"]),
        "git_cli_prep_ms": rnd(s_cli["p50"]),
        "git_cli_prep_p95_ms": rnd(s_cli["p95"]),
        "prep_vs_git_cli_ratio": rnd(statistics.median(ours) / statistics.median(cli)),
        "redact_1mb_ms": rnd(s_red["p50"]),
        "redact_1mb_p95_ms": rnd(s_red["p95"]),
        "one_regex_1mb_ms": rnd(s_raw["p50"]),
        "redact_vs_one_regex_ratio": rnd(s_red["p50"] / s_raw["p50"]),
        "remote_commits": args.commits,
        "remote_files": args.files,
        "load_avg_1m": list(load),
    }
    rows = [
        ("parse+select, 5,000 tasks, none done", s_fresh),
        ("parse+select, 5,000 tasks, 90 % done", s_late),
        ("prep: GitWorkspace refresh+create_task_branch", s_ours),
        ("prep: git CLI (fetch, fetch, checkout -B)", s_cli),
        ("redact 1 MB of log text (every rule)", s_red),
        ("baseline: one compiled regex over 1 MB", s_raw),
    ]
    print_table(
        f"Runner benchmark ({args.runs} timed runs each; ms)",
        ["measure", "p50", "p95", "min", "max"],
        [(name, s["p50"], s["p95"], s["min"], s["max"]) for name, s in rows]
        + [("prep p50 / git CLI prep p50", result["prep_vs_git_cli_ratio"], "", "", ""),
           ("redact p50 / one regex p50", result["redact_vs_one_regex_ratio"], "", "", "")],
        footnotes=[
            ("parse+select: TaskList.parse + select_next of generate_task_list(5000) "
             f"({len(generate_task_list(5000).splitlines()):,} lines), in-process, after a "
             "warm-up parse."),
            (f"prep: bare remote on disk with {args.commits} commits / {args.files} files, "
             "moved by one commit before each round; both sides update their mirror from "
             "the remote, fetch the working copy from the mirror, fast-forward main, and "
             "check out a new task/... branch from it (its tip and working tree are checked "
             "against the remote's). The git CLI pays 3 process starts per prep. Order "
             "alternates."),
            f"1-minute load average before/after: {load[0]} / {load[1]} (2 cores, shared).",
        ],
    )
    if args.json:
        emit_json(result)


if __name__ == "__main__":
    sys.exit(main())
