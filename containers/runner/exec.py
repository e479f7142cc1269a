"""Run one shell command inside a task container and report what it cost.

Baked into the runner image as /opt/devteam/exec.py and run by ``python3``:

    exec.py run TIMEOUT COMMAND   run COMMAND with ``sh -c`` in its own process group; the
                                  first line on stdin is the NONCE (16-64 hex digits)
    exec.py kill PGID             kill a process group (used to cancel a run)

``run`` relays the command's stdout and stderr line by line to its own (a final partial
line gets a newline) from a single thread (a fork bomb may leave no pid for another),
kills the whole group when TIMEOUT seconds pass, and prints two marker lines on stdout,
each ``@@devteam-<NONCE>@@ <json>``: at the start ``{"event": "start", "pgid": N}`` and
at the end ``{"event": "end", "exit": code, "timed_out", "peak_memory_bytes",
"cpu_seconds", "oom_killed", "pids_limited", "disk_limited", "workspace_bytes"}``.
OOM kills and refused forks are detected by comparing the cgroup's counters (v1 or v2)
before and after. Standard library only: the image may have nothing else.

The command runs as our uid, so it must not be able to forge our report. Before anything
else ``run`` makes itself non-dumpable (``prctl(PR_SET_DUMPABLE, 0)``): processes of our uid
can then no longer open ``/proc/<our pid>/fd/*`` (our stdout), ``environ`` or ``mem``. The
nonce never appears in argv (``/proc/<pid>/cmdline`` is readable by every process): it is
read from stdin, which is then replaced by ``/dev/null``. The child is made dumpable again
before it executes the command (it must write its own ``oom_score_adj``; ``execve`` would
reset the flag anyway). The runner still checks our report against the exit status Docker
records for us (a killed wrapper exits 128+N), so a report that was forged anyway fails.

``/workspace`` is a Docker volume on the host's disk with no size limit of its own, so the
wrapper keeps it within a quota (``DEVTEAM_WORKSPACE_QUOTA_MB`` in its environment, default
2048): no file the command writes may grow past the quota (``RLIMIT_FSIZE``), and every
~0.5 s the wrapper measures what ``/workspace`` holds (allocated blocks, at least 4 KiB per
file or directory so empty files count, hard links once, plus deleted files still held
open). When the command grows it past the quota (or, if it already held more when the
command started, by more than 64 MiB) the whole group is killed, with any process that
left the group for the container's init, a line starting with ``DISK_NOTE`` is printed on
stderr and the end report says ``"disk_limited": true``.
"""

import json
import os
import re
import resource
import select
import signal
import selectors
import stat
import subprocess
import sys
import time

CGROUP = "/sys/fs/cgroup"
COUNTERS = {
    "oom_kill": [CGROUP + "/memory/memory.oom_control", CGROUP + "/memory.events"],
    "pids_max": [CGROUP + "/pids/pids.events", CGROUP + "/pids.events"],
}
KEYS = {"oom_kill": "oom_kill", "pids_max": "max"}
MAX_LINE = 64 * 1024
WORKSPACE = "/workspace"
QUOTA_ENV = "DEVTEAM_WORKSPACE_QUOTA_MB"
DEFAULT_QUOTA_MB = 2048
GROWTH_OVER_QUOTA = 64 * 1024 * 1024
MIN_ENTRY_BYTES = 4096
CHECK_SECONDS = 0.5
MAX_CHECK_SECONDS = 5.0
DISK_NOTE = "devteam: disk quota exceeded:"
INITS = ("docker-init", "tini", "tini-static")
PR_SET_DUMPABLE = 4
NONCE = re.compile(r"[0-9a-f]{16,64}")
NONCE_WAIT_SECONDS = 30.0
MAX_NONCE_LINE = 256


_prctl = []


def set_dumpable(flag):
    """``prctl(PR_SET_DUMPABLE, flag)``; False when it could not be done.

    While off, no process of our uid can open ``/proc/<our pid>/fd``, ``environ`` or
    ``mem`` (the files belong to root and ptrace access is refused). libc is loaded on the
    first call (in the wrapper), never in a freshly forked child.
    """
    try:
        if not _prctl:
            import ctypes

            _prctl.append(ctypes.CDLL(None, use_errno=True).prctl)
        return _prctl[0](PR_SET_DUMPABLE, int(flag), 0, 0, 0) == 0
    except (ImportError, OSError, AttributeError):
        return False


def read_nonce(fd=0):
    """The nonce on the first line of ``fd`` (None if none comes within 30 s or it is not
    16-64 hex digits); ``fd`` is then ``/dev/null``, so the command never inherits it."""
    data = b""
    deadline = time.monotonic() + NONCE_WAIT_SECONDS
    while b"\n" not in data and len(data) < MAX_NONCE_LINE:
        left = deadline - time.monotonic()
        try:
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                break
            chunk = os.read(fd, MAX_NONCE_LINE - len(data))
        except OSError:
            break
        if not chunk:
            break
        data += chunk
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, fd)
    os.close(null)
    nonce = data.split(b"\n", 1)[0].strip().decode("ascii", "replace")
    return nonce if NONCE.fullmatch(nonce) else None


def read_counter(name):
    for path in COUNTERS[name]:
        try:
            with open(path) as handle:
                for line in handle:
                    parts = line.split()
                    if len(parts) == 2 and parts[0] == KEYS[name]:
                        return int(parts[1])
        except (OSError, ValueError):
            continue
    return 0


def marker(nonce, payload):
    line = "@@devteam-%s@@ %s\n" % (nonce, json.dumps(payload))
    sys.stdout.buffer.write(line.encode())
    sys.stdout.buffer.flush()


class Relay:
    """Copies one pipe to one of our streams, a whole line at a time."""

    def __init__(self, source, sink):
        self.source = source
        self.sink = sink
        self.partial = b""

    def pump(self):
        """Relay what is readable; False at end of file."""
        try:
            data = os.read(self.source.fileno(), 65536)
        except OSError:
            data = b""
        if not data:
            if self.partial:
                self.write(self.partial + b"\n")
                self.partial = b""
            return False
        *lines, self.partial = (self.partial + data).split(b"\n")
        if len(self.partial) > MAX_LINE:
            lines.append(self.partial)
            self.partial = b""
        if lines:
            self.write(b"".join(line + b"\n" for line in lines))
        return True

    def write(self, data):
        try:
            self.sink.write(data)
            self.sink.flush()
        except (OSError, ValueError):
            pass


def kill_group(pgid, child=None):
    """SIGKILL a process group until it is empty (a fork bomb keeps making members).

    ``child`` (the group leader, ours to reap) is waited for first: an unreaped zombie
    still counts as a member of its group.
    """
    for _ in range(300):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            return
        if child is not None:
            child.wait()
            child = None
            continue
        time.sleep(0.01)


def kill_orphans():
    """SIGKILL every process that left its group for the container's init (``setsid``, a
    double fork), sparing the container's own main process (init's first child)."""
    try:
        with open("/proc/1/comm") as handle:
            spare_first = handle.read().strip() in INITS
    except OSError:
        spare_first = True
    for _ in range(50):
        orphans = []
        for name in os.listdir("/proc"):
            if not name.isdigit() or int(name) == os.getpid():
                continue
            try:
                with open("/proc/%s/stat" % name) as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if len(fields) > 1 and fields[1] == "1":
                orphans.append(int(name))
        orphans.sort()
        if spare_first:
            orphans = orphans[1:]
        if not orphans:
            return
        for pid in orphans:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.01)


def quota_bytes():
    """The /workspace quota from the environment (the default when unset or not a number)."""
    try:
        megabytes = int(os.environ.get(QUOTA_ENV, ""))
    except ValueError:
        megabytes = DEFAULT_QUOTA_MB
    return (megabytes if megabytes > 0 else DEFAULT_QUOTA_MB) * 1024 * 1024


def held_open_deleted(root):
    """Bytes of files under ``root`` that were deleted but are still open or mapped."""
    sizes = {}
    prefix = root + "/"
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        fd_dir = "/proc/%s/fd" % name
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            fds = []
        for fd in fds:
            link = fd_dir + "/" + fd
            try:
                target = os.readlink(link)
                if target.startswith(prefix) and target.endswith(" (deleted)"):
                    info = os.stat(link)
                    sizes[(info.st_dev, info.st_ino)] = info.st_blocks * 512
            except OSError:
                continue
        try:
            with open("/proc/%s/maps" % name) as handle:
                for line in handle:
                    parts = line.split(None, 5)
                    if len(parts) == 6 and parts[5].startswith(prefix) and parts[5].rstrip(
                    ).endswith("(deleted)"):
                        start, end = (int(x, 16) for x in parts[0].split("-"))
                        key = ("map", parts[3], parts[4])
                        sizes[key] = max(sizes.get(key, 0), end - start)
        except (OSError, ValueError):
            continue
    return sum(sizes.values())


def workspace_usage(root):
    """What ``root`` holds: allocated bytes, at least 4 KiB per entry, hard links once.

    Directories made unreadable are made readable again (they belong to the command's
    user, as does everything here), so nothing can be hidden from the count.
    """
    total = 0
    linked = set()
    stack = [root]
    while stack:
        path = stack.pop()
        try:
            entries = os.scandir(path)
        except PermissionError:
            try:
                os.chmod(path, stat.S_IMODE(os.lstat(path).st_mode) | 0o700)
                entries = os.scandir(path)
            except OSError:
                continue
        except OSError:
            continue
        with entries:
            for entry in entries:
                try:
                    info = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                if info.st_nlink > 1 and not stat.S_ISDIR(info.st_mode):
                    key = (info.st_dev, info.st_ino)
                    if key in linked:
                        continue
                    linked.add(key)
                total += max(info.st_blocks * 512, MIN_ENTRY_BYTES)
                if stat.S_ISDIR(info.st_mode):
                    stack.append(entry.path)
    return total + held_open_deleted(root)


def disk_used(path):
    """What the filesystem holding ``path`` (the host's disk, shared) has in use, counted
    as ``workspace_usage`` does: bytes, plus 4 KiB per inode."""
    try:
        info = os.statvfs(path)
    except OSError:
        return 0
    inodes = max(0, info.f_files - info.f_ffree)
    return (info.f_blocks - info.f_bfree) * info.f_frsize + inodes * MIN_ENTRY_BYTES


class DiskWatch:
    """Keeps /workspace within its quota while one command runs (see the module doc).

    Walking a big tree costs time, so it is walked every 0.5 s and, for a tree that takes
    long to walk, less often (~10% of the time); in between, the volume's filesystem
    counters (one cheap ``statvfs`` per ~0.1 s loop) say when the disk grew by more than
    the room left, and then the tree is walked at once (still at most ~25% of the time).
    Only the walk decides.
    """

    def __init__(self, root, quota):
        self.root = root
        self.quota = quota
        self.start = workspace_usage(root) if os.path.isdir(root) else 0
        self.limit = quota if self.start <= quota else self.start + GROWTH_OVER_QUOTA
        self.used = self.start
        self.mark = disk_used(root)
        self.last = time.monotonic()
        self.spent = 0.0
        self.next = self.last + CHECK_SECONDS

    def over(self, now):
        """Measure when due; True once the command has grown /workspace past the limit."""
        if not os.path.isdir(self.root):
            return False
        if now < self.next:
            # between walks: one statvfs says whether the disk grew by more than the room
            # left; then walk at once, as long as walking takes at most ~25% of the time
            if now < self.last + 3 * self.spent:
                return False
            if disk_used(self.root) - self.mark <= self.limit - self.used:
                return False
        self.mark = disk_used(self.root)
        began = time.monotonic()
        self.used = workspace_usage(self.root)
        self.last = time.monotonic()
        self.spent = self.last - began
        self.next = self.last + min(MAX_CHECK_SECONDS, max(CHECK_SECONDS, 10 * self.spent))
        return self.used > self.limit

    def note(self):
        mib = 1024 * 1024
        return "%s /workspace holds %d MiB; the limit is %d MiB (%s=%d); " \
            "the command was stopped\n" % (
                DISK_NOTE, self.used // mib, self.limit // mib, QUOTA_ENV, self.quota // mib)


def prefer_oom_victim():
    """Runs in the child: the command, never this wrapper, is what the OOM killer takes."""
    try:
        with open("/proc/self/oom_score_adj", "w") as handle:
            handle.write("1000")
    except OSError:
        pass


def child_setup(file_limit):
    """What runs in the child before the command: OOM preference and the file size cap."""

    def setup():
        # Still non-dumpable like us, the child could not write its own /proc/self files.
        set_dumpable(True)
        prefer_oom_victim()
        try:
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_limit, file_limit))
        except (OSError, ValueError):
            pass

    return setup


def run(nonce, timeout, command):
    oom_before = read_counter("oom_kill")
    pids_before = read_counter("pids_max")
    watch = DiskWatch(WORKSPACE, quota_bytes())
    started = time.monotonic()
    try:
        child = subprocess.Popen(
            ["/bin/sh", "-c", command],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=child_setup(watch.limit),
        )
    except OSError as exc:
        sys.stderr.write("devteam: cannot start the command: %s\n" % exc)
        marker(
            nonce,
            {
                "event": "end",
                "exit": 126,
                "timed_out": False,
                "oom_killed": False,
                "disk_limited": False,
                "workspace_bytes": watch.used,
                "pids_limited": read_counter("pids_max") > pids_before,
                "peak_memory_bytes": None,
                "cpu_seconds": None,
            },
        )
        return 126
    marker(nonce, {"event": "start", "pgid": child.pid})
    # One thread, no helpers: when a fork bomb has taken every pid, no thread can start.
    selector = selectors.DefaultSelector()
    selector.register(child.stdout, selectors.EVENT_READ, Relay(child.stdout, sys.stdout.buffer))
    selector.register(child.stderr, selectors.EVENT_READ, Relay(child.stderr, sys.stderr.buffer))
    deadline = started + timeout
    drain_until = None
    timed_out = disk_limited = False
    while selector.get_map():
        now = time.monotonic()
        if drain_until is None and child.poll() is not None:
            # Whatever the command left running in its group goes with it; pipes held by
            # processes that escaped the group are given a moment, then abandoned.
            kill_group(child.pid, child)
            drain_until = now + 1.0
        elif drain_until is None and now >= deadline:
            timed_out = True
            kill_group(child.pid, child)
            drain_until = now + 1.0
        elif drain_until is None and watch.over(now):
            disk_limited = True
            kill_group(child.pid, child)
            kill_orphans()
            drain_until = time.monotonic() + 1.0
        if drain_until is not None and now >= drain_until:
            break
        limit = (drain_until if drain_until is not None else deadline) - now
        for key, _ in selector.select(timeout=max(0.0, min(limit, 0.1))):
            if not key.data.pump():
                selector.unregister(key.fileobj)
    code = child.wait()
    kill_group(child.pid, child)
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    exit_code = code if code >= 0 else 128 - code
    if code == -signal.SIGXFSZ:
        disk_limited = True  # the command itself wrote a file past the limit
    if disk_limited:
        sys.stderr.buffer.write(watch.note().encode())
        sys.stderr.buffer.flush()
    marker(
        nonce,
        {
            "event": "end",
            "exit": exit_code,
            "timed_out": timed_out,
            "disk_limited": disk_limited,
            "workspace_bytes": watch.used,
            "peak_memory_bytes": usage.ru_maxrss * 1024,
            "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 3),
            "oom_killed": read_counter("oom_kill") > oom_before,
            "pids_limited": read_counter("pids_max") > pids_before,
        },
    )
    return exit_code


def main(argv):
    if len(argv) == 4 and argv[1] == "run":
        set_dumpable(False)  # first: from here on the command cannot reach our fds
        nonce = read_nonce()
        if nonce is None:
            sys.stderr.write("devteam: exec.py run expects its nonce on stdin\n")
            return 2
        return run(nonce, float(argv[2]), argv[3])
    if len(argv) == 3 and argv[1] == "kill":
        kill_group(int(argv[2]))
        return 0
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
