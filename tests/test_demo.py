"""README's first command tells the operator's story, and leaves nothing behind.

`hack/demo.sh` is setup plus the binaries' build and Prometheus's install (what every test run
already did) plus `hack/demo.py`, so the tests run `hack/demo.py` as a user would: a subprocess
starting the real control plane, generator, Prometheus and ``ajan run``, its stdout a pipe as in a
CI log. Every process of the demo inherits a marker in its environment and its temporary files go
to a directory of the test's own, which is how the tests check that nothing survives; it runs in a
directory of its own too, where the HTML report must be all it leaves. The terminal's live status
line is checked on the narration class itself, with a stream that says it is a terminal: a second
two-minute run under a pseudo-terminal would tell nothing more. The older CSV demo (``--csv``) is
checked too.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import os
import re
import selectors
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from types import ModuleType
from typing import Final

import pytest

ROOT: Final = Path(__file__).resolve().parents[1]
#: Generous: the story takes 1-3 minutes; a first build of the control plane would take ~13 more.
DEMO_TIMEOUT_S: Final = 1500.0
MARKER: Final = "AJAN_DEMO_TEST_MARKER"
#: A stage header: ``[  12.3s] [2/6] control plane: ...``.
STAGE: Final = re.compile(r"^\[\s*\d+\.\ds\] \[(\d+)/(\d+)\] ")
#: The demo's line about a report it wrote: ``report of plan NAME (ACTION): PATH``.
REPORT: Final = re.compile(r"report of plan (\S+) \((\w+)\): (\S+\.html)$")


class Demo:
    """``hack/demo.py`` in a session of its own (so a SIGINT to its group is a terminal's Ctrl-C),
    run in ``tmp_path/work`` (its default report directory)."""

    def __init__(self, tmp_path: Path) -> None:
        self.marker = uuid.uuid4().hex
        self.tmpdir = tmp_path / "tmp"
        self.tmpdir.mkdir()
        self.workdir = tmp_path / "work"
        self.workdir.mkdir()
        env = {**os.environ, MARKER: self.marker, "TMPDIR": str(self.tmpdir), "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "hack" / "demo.py")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=self.workdir,
            start_new_session=True,
        )
        self.lines: list[str] = []
        #: Everything the demo wrote on stdout, as it wrote it.
        self.stdout = b""
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
                self.stdout += chunk
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


def stages(lines: list[str]) -> list[int]:
    """The numbers of the stage headers among ``lines``, in order; each must be out of 6."""
    found = [STAGE.match(line) for line in lines]
    assert all(m.group(2) == "6" for m in found if m), [line for line in lines if STAGE.match(line)]
    return [int(m.group(1)) for m in found if m]


def assert_self_contained(page: str) -> None:
    """Nothing in the page loads anything: no src, no link or script, every href within the page."""
    assert "src=" not in page.lower()
    assert not re.search(r"<(script|link|iframe|object|embed|img)\b", page, re.IGNORECASE)
    assert not re.search(r"@import|url\(", page, re.IGNORECASE)
    hrefs = re.findall(r"""href\s*=\s*["']?([^"'\s>]*)""", page, re.IGNORECASE)
    assert all(h.startswith("#") for h in hrefs), [h for h in hrefs if not h.startswith("#")]
    assert "Content-Security-Policy" in page and "default-src 'none'" in page


@pytest.mark.e2e  # hack/demo.py starts the whole stack and `ajan run` itself: no fixture says so
def test_demo_tells_the_operator_story_and_cleans_up(tmp_path: Path) -> None:
    demo = Demo(tmp_path)
    returncode, stderr = demo.finish(DEMO_TIMEOUT_S)
    out = "\n".join(demo.lines)
    assert returncode == 0, f"exit {returncode}\n{out}\n{stderr}"
    assert "Traceback" not in stderr, stderr
    # Six stages, each announced once, in order; a pipe gets plain lines only.
    assert stages(demo.lines) == [1, 2, 3, 4, 5, 6], out
    assert b"\r" not in demo.stdout and b"\x1b" not in demo.stdout, out
    assert any("is Ready (Evaluated)" in line for line in demo.lines), out
    assert any("injected a leading_indicator fault" in line for line in demo.lines), out
    proposed = next(line for line in demo.lines if "plan proposed:" in line)
    assert any(f"action {action}," in proposed for action in ("annotate", "pause", "abort")), proposed
    evidence = " ".join(evidence_after(demo.lines, "plan proposed:"))
    assert "anomalous: queue-depth" in evidence or "anomalous: latency-p99" in evidence, evidence
    assert "queue-depth" in evidence and "latency-p99" in evidence, evidence
    rollout = "/apis/argoproj.io/v1alpha1/namespaces/demo/rollouts/checkout"
    assert any(f"sent PATCH {rollout}" in line for line in demo.lines), out
    # The measured lead: when ajan paused or aborted, against when p99 crossed its SLO.
    assert any(
        re.search(
            r"lead: ajan's first (pause|abort) came \d+s after the fault began, "
            r"\d+s (before|after) p99 first crossed 0.5s",
            line,
        )
        for line in demo.lines
    ), out
    assert any("forecast:  latency-p99" in line for line in demo.lines), out
    assert any("-> Resolved" in line for line in demo.lines), out
    assert any("$ kubectl get correlationpolicies,remediationplans -n demo" in line for line in demo.lines)
    assert any("Resolved" in line and "remediationplan.aiops.ajan.dev/" in line for line in demo.lines), out

    # The report of each plan that paused or aborted the Rollout, written before the stack went
    # (its timeline has data), kept after the clean-up, and all the demo leaves in its directory.
    said = [m.groups() for m in map(REPORT.search, demo.lines) if m]
    assert said, f"no report written:\n{out}"
    proposed_actions = dict(re.findall(r"plan proposed: (\S+): action (\w+),", out))
    for plan, action, path in said:
        assert action in ("pause", "abort"), said
        assert proposed_actions.get(plan) == action, (plan, action, proposed_actions)
        assert path == f"ajan-demo-{plan}.html", path  # in the current directory, by default
        page = (demo.workdir / path).read_text(encoding="utf-8")
        assert f"<title>{plan}: {action} on checkout</title>" in page, page[:500]
        assert_self_contained(page)
        assert "Timeline unavailable" not in page, "the report was rendered without Prometheus"
    assert sorted(p.name for p in demo.workdir.iterdir()) == sorted(path for *_, path in said)
    assert "nothing left" in demo.lines[-1], out
    assert all(path in demo.lines[-1] for *_, path in said), demo.lines[-1]
    demo.assert_nothing_left()


@pytest.mark.e2e  # hack/demo.py starts the whole stack and `ajan run` itself: no fixture says so
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
    assert stages(demo.lines) == [1, 2, 3, 4], "\n".join(demo.lines)
    assert b"\r" not in demo.stdout, "\n".join(demo.lines)
    demo.assert_nothing_left()
    assert list(demo.workdir.iterdir()) == [], "an interrupted demo wrote a report"


# --- the narration and the command line, without the stack ----------------------------------------


@pytest.fixture(scope="module")
def demo_module() -> ModuleType:
    """``hack/demo.py`` imported (it is a script, not a module of the package)."""
    spec = importlib.util.spec_from_file_location("ajan_demo_script", ROOT / "hack" / "demo.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Terminal(io.StringIO):
    """An output stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_without_a_terminal_the_wait_is_plain_lines_only_when_quiet(demo_module: ModuleType) -> None:
    out, clock = io.StringIO(), Clock()
    story = demo_module.Story(out, clock=clock)
    story.stage(1)
    story.stage(2)
    clock.now += 5
    story.waiting("policy checkout-canary Ready", 5, 120, "; 0 evaluations")
    assert out.getvalue().count("\n") == 3  # the headers and the blank line between: no status
    clock.now += demo_module.QUIET_S
    story.waiting("policy checkout-canary Ready", 25, 120)
    story.waiting("policy checkout-canary Ready", 25.5, 120)  # just said: not again
    lines = out.getvalue().splitlines()
    assert lines == [
        "[   0.0s] [1/6] set-up: etcd + kube-apiserver binaries, Prometheus and Redis "
        "(instant once built; first time ~13 min)",
        "",
        "[   0.0s] [2/6] control plane: starting etcd + kube-apiserver, ajan's CRDs and a canary Rollout "
        "(~10 s)",
        "[  25.0s] still waiting for policy checkout-canary Ready: 25s (at most 120s)",
    ]
    assert "\r" not in out.getvalue() and "\x1b" not in out.getvalue()


def test_on_a_terminal_the_wait_is_one_live_line_under_the_story(
    demo_module: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "60")
    out, clock = Terminal(), Clock()
    story = demo_module.Story(out, clock=clock)
    story.stage(5, announced=True)  # as after hack/demo.sh: no header
    assert out.getvalue() == ""
    story.waiting("a RemediationPlan", 3.2, 150, "; 7 evaluations, confidence 0.23")
    status = "[5/6] waiting for a RemediationPlan: 3s (at most 150s); 7 evaluations, confidence 0.23"
    assert out.getvalue() == f"\r{status[:59]}\x1b[K"  # cut to the width: a wrapped line stays
    out.seek(0)
    out.truncate()
    clock.now += 2
    story.say("evaluation: confidence 0.99")  # erases the status, says the line, redraws the status
    assert out.getvalue() == f"\r\x1b[K[   2.0s] evaluation: confidence 0.99\n\r{status[:59]}\x1b[K"
    out.seek(0)
    out.truncate()
    story.clear_status()
    story.clear_status()  # nothing shown: nothing written
    assert out.getvalue() == "\r\x1b[K"


def test_reports_go_to_the_current_directory_unless_told(demo_module: ModuleType, tmp_path: Path) -> None:
    assert demo_module.parse_args([]).report_dir == Path.cwd()
    assert demo_module.parse_args(["--report-dir", str(tmp_path)]).report_dir == tmp_path
    assert demo_module.parse_args(["--no-report"]).report_dir is None
    with pytest.raises(SystemExit):
        demo_module.parse_args(["--no-report", "--report-dir", str(tmp_path)])
    assert demo_module.report_path(tmp_path, "checkout-canary-x1-abort") == (
        tmp_path / "ajan-demo-checkout-canary-x1-abort.html"
    )


def test_each_forecast_states_its_probability_once(demo_module: ModuleType) -> None:
    forecast = {"metric": "latency-p99", "threshold": 0.5, "value": 0.46, "horizonSeconds": 20.0}
    maybe = {**forecast, "etaLowSeconds": 12.0, "probability": 0.3}
    never = {**forecast, "probability": 0.0}
    soon = {**forecast, "etaSeconds": 18.0, "etaLowSeconds": 13.0, "probability": 0.22}
    lines = demo_module.evidence_lines({"forecasts": [maybe, never, soon]})
    assert [line.count("(probability") for line in lines] == [1, 1, 1], lines
    assert lines[0].endswith("may cross 0.5 within 20 s (probability 30%)"), lines
    assert lines[2].endswith("(13 s or later) (probability 22%)"), lines


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
