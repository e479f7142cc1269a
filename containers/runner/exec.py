"""Run one shell command inside a task container and report what it cost.

Baked into the runner image as /opt/devteam/exec.py and run by ``python3``:

    exec.py run NONCE TIMEOUT COMMAND   run COMMAND with ``sh -c`` in its own process group
    exec.py kill PGID                   kill a process group (used to cancel a run)

``run`` relays the command's stdout and stderr line by line to its own (a final partial
line gets a newline) from a single thread (a fork bomb may leave no pid for another),
kills the whole group when TIMEOUT seconds pass, and prints two marker lines on stdout,
each ``@@devteam-<NONCE>@@ <json>``: at the start ``{"event": "start", "pgid": N}`` and
at the end ``{"event": "end", "exit": code, "timed_out", "peak_memory_bytes",
"cpu_seconds", "oom_killed", "pids_limited"}``.
OOM kills and refused forks are detected by comparing the cgroup's counters (v1 or v2)
before and after. Standard library only: the image may have nothing else.
"""

import json
import os
import resource
import signal
import selectors
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


def prefer_oom_victim():
    """Runs in the child: the command, never this wrapper, is what the OOM killer takes."""
    try:
        with open("/proc/self/oom_score_adj", "w") as handle:
            handle.write("1000")
    except OSError:
        pass


def run(nonce, timeout, command):
    oom_before = read_counter("oom_kill")
    pids_before = read_counter("pids_max")
    started = time.monotonic()
    try:
        child = subprocess.Popen(
            ["/bin/sh", "-c", command],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=prefer_oom_victim,
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
    timed_out = False
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
    marker(
        nonce,
        {
            "event": "end",
            "exit": exit_code,
            "timed_out": timed_out,
            "peak_memory_bytes": usage.ru_maxrss * 1024,
            "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 3),
            "oom_killed": read_counter("oom_kill") > oom_before,
            "pids_limited": read_counter("pids_max") > pids_before,
        },
    )
    return exit_code


def main(argv):
    if len(argv) == 5 and argv[1] == "run":
        return run(argv[2], float(argv[3]), argv[4])
    if len(argv) == 3 and argv[1] == "kill":
        kill_group(int(argv[2]))
        return 0
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
