"""The code sandbox (bubblewrap), attacked for real: each hostile program is graded wrong within its limits,
nothing escapes, no process is left behind, and the next program is graded right."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from k15.grading import grade
from k15.sandbox import FIRST_UID, UID_COUNT, Sandbox, SandboxLimits

RECORD = {"entry_point": "add", "prompt": "def add(a, b):\n    \"\"\"a + b\"\"\"\n",
          "test": "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n"}  # fmt: skip
SECRET = "k15-planted-7f3a9c"
RIGHT = "```python\ndef add(a, b):\n    return a + b\n```"


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    box = Sandbox(SandboxLimits(wall_s=6, cpu_s=3, memory_mb=512, processes=16, workers=2))
    yield box
    box.close()


def live_sandbox_processes(box: Sandbox) -> list[psutil.Process]:
    """Live processes of ``box``'s uids (as root), else of any sandbox uid (only other graders' could be there)."""
    mine = set(box._leases) or set(range(FIRST_UID, FIRST_UID + UID_COUNT))
    found = []
    for proc in psutil.process_iter(["uids", "status", "cmdline"]):
        uids = proc.info["uids"]
        if uids and uids.real in mine and proc.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(proc)
    return found


def attack(body: str) -> str:
    """A response whose code runs ``body`` (the attack), then defines a wrong ``add``: only the attack could make
    it pass."""
    return f"```python\n{body}\n\ndef add(a, b):\n    return a - b\n```"


def test_a_right_solution_passes_and_a_wrong_one_fails(sandbox: Sandbox) -> None:
    assert grade("code", RIGHT, RECORD, sandbox=sandbox).correct
    wrong = grade("code", "```python\ndef add(a, b):\n    return a - b\n```", RECORD, sandbox=sandbox)
    assert not wrong.correct and wrong.verifier == "sandbox" and "AssertionError" in wrong.detail


@pytest.fixture
def listener() -> Iterator[int]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.2)
    yield server.getsockname()[1]
    server.close()


@pytest.fixture
def planted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    secret = Path.home() / f".k15-planted-{os.getpid()}"
    secret.write_text(SECRET)
    monkeypatch.setenv("K15_PLANTED", SECRET)
    yield secret
    secret.unlink(missing_ok=True)


ATTACKS = {
    "endless loop": ("while True:\n    pass", ("killed", "timeout")),
    "sleeping forever": ("import time\ntime.sleep(3600)", ("timeout",)),
    "fork bomb": ("import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass",
                  ("timeout", "killed")),
    "20 GB allocation": ("blob = bytearray(20 * 2**30)", ("failed: MemoryError",)),
    "killing its parent": ("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nos.killpg(0, signal.SIGKILL)",
                           ("killed", "failed: AssertionError")),
    "exit 0 before the asserts": ("import sys\nsys.exit(0)", ("no-marker",)),
    "os._exit(0) before the asserts": ("import os\nos._exit(0)", ("no-marker",)),
    "a huge file": ("with open('/tmp/big', 'wb') as f:\n    for _ in range(1024):\n        f.write(b'x' * 2**20)",
                    ("failed: OSError",)),
}  # fmt: skip


@pytest.mark.parametrize("name", ATTACKS)
def test_attacks_are_graded_wrong_within_their_limits(sandbox: Sandbox, name: str) -> None:
    body, statuses = ATTACKS[name]
    started = time.monotonic()
    verdict = grade("code", attack(body), RECORD, sandbox=sandbox)
    assert not verdict.correct
    assert verdict.detail.startswith(statuses), verdict.detail
    assert time.monotonic() - started < sandbox.limits.wall_s + 5
    assert live_sandbox_processes(sandbox) == []
    assert grade("code", RIGHT, RECORD, sandbox=sandbox).correct  # the grader goes on


def test_no_view_of_the_host_network_files_or_environment(sandbox: Sandbox, listener: int, planted: Path) -> None:
    probes = {
        "a file planted in the host's home": f"print(open({str(planted)!r}).read())",
        "the checkout": f"print(open({str(Path(__file__).resolve())!r}).read())",
        "a listener on 127.0.0.1": f"import socket\nsocket.create_connection(('127.0.0.1', {listener}), timeout=2)",
        "a planted environment variable": "import os\nprint(os.environ.get('K15_PLANTED'))\nassert False",
    }
    for what, body in probes.items():
        result = sandbox.run(body)
        assert not result.passed, what
        assert SECRET not in result.stdout + result.stderr, what


def test_writes_outside_the_sandbox_do_not_land(sandbox: Sandbox, tmp_path: Path) -> None:
    target = tmp_path / "escaped"
    for path in (target, Path("/usr/k15-escaped")):
        result = sandbox.run(f"open({str(path)!r}, 'w').write('x')")
        assert not result.passed and not path.exists()
    inside = sandbox.run("open('/tmp/scratch', 'w').write('x')\nassert open('/tmp/scratch').read() == 'x'")
    assert inside.passed  # its own /tmp is writable


def test_many_programs_are_graded_concurrently_in_order(sandbox: Sandbox) -> None:
    programs = [f"assert {i} % 3 != 0" for i in range(24)]
    results = sandbox.run_many(programs)
    assert [r.passed for r in results] == [i % 3 != 0 for i in range(24)]


@pytest.mark.skipif(os.geteuid() != 0, reason="sandbox uids are handed out only when running as root")
def test_sandboxes_of_two_processes_never_share_a_uid(sandbox: Sandbox) -> None:
    """Ending a program kills every process of its uid, so a second grader on the machine (another process, here a
    real one) must get other uids, and get them back once the first is closed."""
    script = (
        "from k15.sandbox import Sandbox, SandboxLimits\n"
        "box = Sandbox(SandboxLimits(workers=3))\n"
        "print(sorted(box._leases), flush=True)\n"
        "input()\n"
        "box.close()\n"
    )
    other = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        theirs = set(json.loads(other.stdout.readline()))
        assert len(theirs) == 3 and not theirs & set(sandbox._leases)
        mine = Sandbox(SandboxLimits(workers=2))
        assert not set(mine._leases) & (theirs | set(sandbox._leases))
        result = mine.run("assert sum(range(4)) == 6")
        assert result.status == "passed", result
        mine.close()
    finally:
        other.communicate("\n", timeout=30)
    again = Sandbox(SandboxLimits(workers=3))
    assert set(again._leases) & theirs, "uids of a closed sandbox are free again"
    again.close()
