"""Run untrusted Python (model-written code) in a bubblewrap sandbox.

Each program runs in fresh namespaces (``bwrap --unshare-all``): its own network (no route anywhere, not even the
host's loopback), PIDs (the program is PID 1 and sees only what it starts; when it ends, the kernel kills all of
that), IPC, UTS and cgroup.
Its file system is a read-only Python runtime (``/usr`` and the interpreter's prefix), a private ``/proc`` and
``/dev``, and a small private writable ``/tmp``; no home, no checkout, no host ``/tmp``, no secrets. The environment
is cleared. Resource limits (rlimits set before ``bwrap`` starts, inherited by everything inside): CPU seconds,
address space, processes, size of any written file; the wall-clock limit kills the whole process group. Run as
root, each concurrent program gets its own unprivileged uid, so the process limit counts its processes only.

Success is decided by a marker, never by the exit code alone: :func:`harness` prints a random token after every
assertion has run, so a program that exits 0 early (``sys.exit(0)``, ``os._exit(0)``) fails.
"""

from __future__ import annotations

import os
import queue
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout
from pydantic import Field

from k15.config import Config

BWRAP = "bwrap"
PRLIMIT = "prlimit"
FIRST_UID = 61000  # uids handed to concurrent programs when running as root (one each) …
UID_COUNT = 64  # … from this many, leased across processes (two graders at once never share a uid)
UID_LOCKS = Path(tempfile.gettempdir()) / "k15-sandbox-uids"
OUTPUT_LIMIT = 64 * 1024  # bytes of stdout / stderr kept


class SandboxError(RuntimeError):
    """The sandbox cannot run here (bubblewrap missing or refused); the message says what to do."""


class SandboxLimits(Config):
    """Limits of one sandboxed program; change them in a config's ``sandbox`` section."""

    wall_s: float = Field(10.0, gt=0, description="wall-clock seconds before the process group is killed")
    cpu_s: int = Field(10, ge=1, description="CPU seconds (RLIMIT_CPU; then SIGKILL)")
    memory_mb: int = Field(1024, ge=64, description="address space in MiB (RLIMIT_AS)")
    processes: int = Field(32, ge=1, description="processes and threads (RLIMIT_NPROC, per sandbox uid)")
    file_size_mb: int = Field(16, ge=1, description="largest file it may write, MiB (RLIMIT_FSIZE)")
    tmp_mb: int = Field(64, ge=1, description="size of its private writable /tmp, MiB")
    workers: int | None = Field(None, ge=1, description="programs run at once (default: the CPU count)")
    python: str | None = Field(None, description="interpreter inside the sandbox (default: /usr/bin/python3)")


@dataclass(frozen=True)
class RunResult:
    """What one program did: ``passed`` (exit 0 and the marker printed last), why it failed, its output."""

    passed: bool
    status: str  # "passed", "failed" (assertion or error), "timeout", "killed" (a signal: the CPU limit's SIGKILL,
    # or its own), "no-marker" (exited 0 before the end)
    returncode: int | None
    stdout: str
    stderr: str
    seconds: float

    @property
    def reason(self) -> str:
        """The status, with the last line of stderr for a failure ("failed: AssertionError")."""
        last = self.stderr.strip().rpartition("\n")[2].strip()
        return f"{self.status}: {last[:200]}" if self.status == "failed" and last else self.status


def harness(program: str, marker: str) -> str:
    """``program`` followed by the line that prints ``marker``: reached only if every statement before ran."""
    return f"{program}\n\nprint({marker!r}, flush=True)\n"


def sandbox_python(configured: str | None = None) -> str:
    """The interpreter run inside the sandbox: ``configured``, else Debian's ``/usr/bin/python3``, else this one's
    base interpreter (its prefix is then mounted read-only too)."""
    if configured:
        return configured
    if Path("/usr/bin/python3").is_file():
        return "/usr/bin/python3"
    return os.path.realpath(getattr(sys, "_base_executable", sys.executable))


def check_available() -> None:
    """SandboxError with the fix when bubblewrap is missing or cannot create namespaces here."""
    if shutil.which(BWRAP) is None:
        raise SandboxError(
            "bubblewrap (bwrap) is not installed: code is only run sandboxed. "
            "Install it (Debian/Ubuntu: apt-get install bubblewrap; `make install` does as root)."
        )
    if shutil.which(PRLIMIT) is None:
        raise SandboxError("prlimit (util-linux) is not installed: it sets the sandbox's resource limits")
    probe = subprocess.run([BWRAP, "--unshare-all", "--ro-bind", "/", "/", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        raise SandboxError(
            f"bubblewrap cannot create namespaces here: {probe.stderr.strip() or probe.returncode} "
            "(run as root, or enable unprivileged user namespaces: sysctl kernel.unprivileged_userns_clone=1)"
        )


def _mounts(python: str) -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for name in ("bin", "lib", "lib64", "lib32", "sbin"):
        target = Path("/") / name
        if target.is_symlink():
            args += ["--symlink", os.readlink(target), str(target)]
        elif target.is_dir():
            args += ["--ro-bind", str(target), str(target)]
    prefix = Path(python).resolve().parent.parent
    if not str(prefix).startswith("/usr"):
        args += ["--ro-bind", str(prefix), str(prefix)]
    return args


class Sandbox:
    """Runs programs with :class:`SandboxLimits`, several at once (bounded by the cores), each isolated."""

    def __init__(self, limits: SandboxLimits | None = None) -> None:
        self.limits = limits or SandboxLimits()
        self.python = sandbox_python(self.limits.python)
        self.workers = self.limits.workers or os.cpu_count() or 1
        check_available()
        self._leases = lease_uids(self.workers) if os.geteuid() == 0 else {}
        self._uids: queue.Queue[int | None] = queue.Queue()
        for uid in self._leases or [None] * self.workers:
            self._uids.put(uid)
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="k15-sandbox")

    def command(self) -> list[str]:
        """The bwrap command line that runs Python source read from stdin."""
        tmp_bytes = str(self.limits.tmp_mb * 2**20)
        return [
            BWRAP, "--unshare-all", "--die-with-parent", "--new-session", "--as-pid-1", *_mounts(self.python),
            "--proc", "/proc", "--dev", "/dev", "--size", tmp_bytes, "--tmpfs", "/tmp",
            "--clearenv", "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "HOME", "/tmp", "--chdir", "/tmp",
            self.python, "-I", "-B", "-",
        ]  # fmt: skip

    def _prlimit(self, uid: int | None) -> list[str]:
        """``prlimit`` options: the limits, inherited by bwrap and everything it starts (no ``preexec_fn``: the
        programs are started from threads)."""
        lim = self.limits
        processes = lim.processes if uid is not None else lim.processes + _own_process_count()
        return [
            PRLIMIT,
            f"--cpu={lim.cpu_s}",
            f"--as={lim.memory_mb * 2**20}",
            f"--nproc={processes}",
            f"--fsize={lim.file_size_mb * 2**20}",
            "--core=0",
            "--",
        ]

    @contextmanager
    def _uid(self) -> Iterator[int | None]:
        uid = self._uids.get()
        try:
            yield uid
        finally:
            self._uids.put(uid)

    def run(self, program: str) -> RunResult:
        """Run ``program`` (Python source) with a fresh marker; passed means exit 0 with the marker printed last."""
        marker = f"K15-PASSED-{secrets.token_hex(16)}"
        source = harness(program, marker).encode()
        with self._uid() as uid:
            ids = {"user": uid, "group": uid, "extra_groups": []} if uid is not None else {}
            started = time.monotonic()
            proc = subprocess.Popen(
                [*self._prlimit(uid), *self.command()], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, start_new_session=True, env={}, cwd="/", **ids,
            )  # fmt: skip
            timed_out = False
            try:
                out, err = proc.communicate(source, timeout=self.limits.wall_s)
            except subprocess.TimeoutExpired:  # the group: bwrap, and with its PID namespace all inside it
                timed_out = True
                _kill_group(proc.pid)
                out, err = proc.communicate()
            if uid is not None:
                _kill_uid(uid)  # the namespace dies with bwrap, asynchronously: wait until nothing of it is left
            seconds = time.monotonic() - started
        stdout = out[-OUTPUT_LIMIT:].decode("utf-8", "replace")
        stderr = err[-OUTPUT_LIMIT:].decode("utf-8", "replace")
        lines = stdout.rstrip("\n").rsplit("\n", 1)
        marked = lines[-1] == marker
        if timed_out:
            status = "timeout"
        elif proc.returncode < 0 or proc.returncode > 128:
            status = "killed"
        elif proc.returncode != 0:
            status = "failed"
        else:
            status = "passed" if marked else "no-marker"
        return RunResult(status == "passed", status, proc.returncode, stdout.replace(marker, ""), stderr, seconds)

    def run_many(self, programs: Sequence[str]) -> list[RunResult]:
        """Run ``programs`` concurrently (at most ``workers`` at once); results in the same order."""
        return list(self._pool.map(self.run, programs))

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        for lock in self._leases.values():
            lock.release()
        self._leases = {}


def lease_uids(count: int) -> dict[int, FileLock]:
    """``count`` sandbox uids no other live process holds (uid → the lock that holds it until released, or until this
    process exits). A second grader on the same machine — an evaluation beside a code RL run — must not get the same
    uids: ending a program kills every process of its uid."""
    UID_LOCKS.mkdir(mode=0o700, exist_ok=True)
    leases: dict[int, FileLock] = {}
    for uid in range(FIRST_UID, FIRST_UID + UID_COUNT):
        lock = FileLock(UID_LOCKS / str(uid), thread_local=False)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            continue
        leases[uid] = lock
        if len(leases) == count:
            return leases
    for lock in leases.values():
        lock.release()
    raise SandboxError(
        f"no free sandbox uid: {UID_COUNT} from {FIRST_UID} are all held by other k15 processes (locks in "
        f"{UID_LOCKS}); wait for them to finish, or give fewer sandbox workers"
    )


def _kill_group(pgid: int) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _processes_of(uid: int) -> list[int]:
    """Live processes of ``uid`` (zombies are dead: they wait only for the host's init to reap them)."""
    return [int(entry.name) for entry in Path("/proc").iterdir()
            if entry.name.isdigit() and _owner(entry) == uid and not _zombie(entry)]  # fmt: skip


def _zombie(entry: Path) -> bool:
    try:
        return (entry / "stat").read_text().rpartition(")")[2].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def _kill_uid(uid: int, patience_s: float = 5.0) -> None:
    """SIGKILL every process of the sandbox ``uid`` until none is left (or ``patience_s`` has passed)."""
    deadline = time.monotonic() + patience_s
    while (pids := _processes_of(uid)) and time.monotonic() < deadline:
        for pid in pids:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.01)


def _own_process_count() -> int:
    """Processes of this uid now (RLIMIT_NPROC counts them all when the sandbox shares our uid)."""
    return len(_processes_of(os.getuid()))


def _owner(entry: Path) -> int | None:
    try:
        return entry.stat().st_uid
    except OSError:
        return None
