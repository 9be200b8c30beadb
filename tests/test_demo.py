"""README's first command tells the operator's story, and leaves nothing behind.

`hack/demo.sh` is setup plus the binaries' build and Prometheus's install (what every test run
already did) plus `hack/demo.py`, so the tests run `hack/demo.py` as a user would: a subprocess
starting the real control plane, generator, Prometheus and ``ajan run``. Every process of the demo
inherits a marker in its environment and its temporary files go to a directory of the test's own,
which is how the tests check that nothing survives. The older CSV demo (``--csv``) is checked too.
"""

from __future__ import annotations

import csv
import os
import selectors
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parents[1]
#: Generous: the story takes 1-3 minutes; a first build of the control plane would take ~13 more.
DEMO_TIMEOUT_S: Final = 1500.0
MARKER: Final = "AJAN_DEMO_TEST_MARKER"


class Demo:
    """``hack/demo.py`` in a session of its own (so a SIGINT to its group is a terminal's Ctrl-C)."""

    def __init__(self, tmp_path: Path) -> None:
        self.marker = uuid.uuid4().hex
        self.tmpdir = tmp_path / "tmp"
        self.tmpdir.mkdir()
        env = {**os.environ, MARKER: self.marker, "TMPDIR": str(self.tmpdir), "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "hack" / "demo.py")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self._buffer = b""

    def read_until(self, wanted: str | None, timeout: float) -> str | None:
        """Read stdout lines until one contains ``wanted`` (returned) or, with None, until EOF."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as selector:
            selector.register(self.proc.stdout, selectors.EVENT_READ)
            while True:
                remaining = deadline - time.monotonic()
                assert remaining > 0, f"demo: no {wanted!r} within {timeout:g} s:\n" + "\n".join(self.lines)
                if not selector.select(timeout=min(remaining, 1.0)):
                    continue
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                if not chunk:
                    return None
                self._buffer += chunk
                *lines, self._buffer = self._buffer.split(b"\n")
                for line in lines:
                    text = line.decode(errors="replace")
                    self.lines.append(text)
                    if wanted is not None and wanted in text:
                        return text

    def finish(self, timeout: float) -> tuple[int, str]:
        """Read to the end, wait for the exit; returns the exit status and stderr."""
        try:
            self.read_until(None, timeout)
            returncode = self.proc.wait(timeout=60)
        except BaseException:
            self.kill()
            raise
        assert self.proc.stderr is not None
        stderr = self.proc.stderr.read().decode(errors="replace")
        self.proc.stdout and self.proc.stdout.close()
        self.proc.stderr.close()
        return returncode, stderr

    def kill(self) -> None:
        """Last resort after a failed test: interrupt the demo (it cleans up), then kill what is left."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        for pid in marked_processes(self.marker):
            os.kill(pid, signal.SIGKILL)

    def assert_nothing_left(self) -> None:
        """No process carries the demo's marker, and its temporary directory is empty."""
        left = marked_processes(self.marker)
        commands = {pid: _cmdline(pid) for pid in left}
        assert not left, f"processes of the demo survived it: {commands}"
        assert list(self.tmpdir.iterdir()) == [], f"the demo left {list(self.tmpdir.iterdir())}"


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "?"


def marked_processes(marker: str) -> list[int]:
    """Live processes (not zombies) whose environment holds the demo's marker."""
    needle = f"{MARKER}={marker}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()  # empty for a zombie
        except OSError:  # gone meanwhile, or not ours
            continue
        if needle in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def evidence_after(lines: list[str], start: str) -> list[str]:
    """The indented lines that follow the first line containing ``start``."""
    index = next(i for i, line in enumerate(lines) if start in line)
    block = []
    for line in lines[index + 1 :]:
        if not line.startswith(" "):
            break
        block.append(line.strip())
    return block


def test_demo_tells_the_operator_story_and_cleans_up(tmp_path: Path) -> None:
    demo = Demo(tmp_path)
    returncode, stderr = demo.finish(DEMO_TIMEOUT_S)
    out = "\n".join(demo.lines)
    assert returncode == 0, f"exit {returncode}\n{out}\n{stderr}"
    assert "Traceback" not in stderr, stderr
    assert any("is Ready (Evaluated)" in line for line in demo.lines), out
    assert any("injected a leading_indicator fault" in line for line in demo.lines), out
    proposed = next(line for line in demo.lines if "plan proposed:" in line)
    assert any(f"action {action}," in proposed for action in ("annotate", "pause", "abort")), proposed
    evidence = " ".join(evidence_after(demo.lines, "plan proposed:"))
    assert "anomalous: queue-depth" in evidence or "anomalous: latency-p99" in evidence, evidence
    assert "queue-depth" in evidence and "latency-p99" in evidence, evidence
    assert any("-> Resolved" in line for line in demo.lines), out
    assert any("$ kubectl get correlationpolicies,remediationplans -n demo" in line for line in demo.lines)
    assert any("Resolved" in line and "remediationplan.aiops.ajan.dev/" in line for line in demo.lines), out
    assert "nothing left" in demo.lines[-1], out
    demo.assert_nothing_left()


def test_ctrl_c_mid_demo_stops_everything(tmp_path: Path) -> None:
    demo = Demo(tmp_path)
    try:
        ready = demo.read_until("is Ready (Evaluated)", DEMO_TIMEOUT_S)
        assert ready is not None, "\n".join(demo.lines)
        assert marked_processes(demo.marker), "the demo's stack is not running"
        os.killpg(demo.proc.pid, signal.SIGINT)  # what Ctrl-C at the terminal does
    except BaseException:
        demo.kill()
        raise
    returncode, stderr = demo.finish(timeout=180)
    assert returncode == 130, f"exit {returncode}\n{stderr}"
    assert "interrupted" in stderr and "Traceback" not in stderr, stderr
    demo.assert_nothing_left()


def test_detect_on_the_sample_alerts_only_after_the_leak_starts(tmp_path: Path) -> None:
    out = tmp_path / "scores.csv"
    subprocess.run(
        [
            *(sys.executable, "-m", "ajan", "detect", str(ROOT / "samples" / "canary.csv")),
            *("--train", str(ROOT / "samples" / "canary-baseline.csv"), "--output", str(out)),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 1440
    alerting = [r["timestamp"] for r in rows if r["alert"] == "1"]
    assert alerting, "the memory leak that starts at 14:00 was never alerted"
    # The leak starts at 14:00; nothing before it may alert, and it must be caught the same afternoon.
    assert "2026-11-23T14:00:00Z" < alerting[0] < "2026-11-23T17:00:00Z", alerting[0]


def test_csv_demo_names_the_leak_as_the_cause() -> None:
    run = subprocess.run(
        [sys.executable, str(ROOT / "hack" / "demo.py"), "--csv"], check=True, capture_output=True, text=True
    )
    lines = run.stdout.splitlines()
    cause = next(line for line in lines if line.startswith("3. Most likely cause"))
    assert cause.split(": ", 1)[1].startswith("memory_bytes"), cause
    anomalous = lines[lines.index("2. Anomalous metrics at the alert:") + 1]
    assert anomalous.split()[0] == "memory_bytes", anomalous
    assert "Traceback" not in run.stderr
