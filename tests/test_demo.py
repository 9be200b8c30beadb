"""README's first command tells the bundled incident's story correctly.

`hack/demo.sh` is setup plus `ajan detect` plus `hack/demo.py`; the setup part is
what every test run already did, so the test runs the two others as a user would.
"""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_detect_on_the_sample_alerts_only_after_the_leak_starts(tmp_path: Path) -> None:
    out = tmp_path / "scores.csv"
    subprocess.run(
        [sys.executable, "-m", "ajan", "detect", str(ROOT / "samples" / "canary.csv"),
         "--train", str(ROOT / "samples" / "canary-baseline.csv"), "--output", str(out)],
        check=True, capture_output=True, text=True,
    )
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 1440
    alerting = [r["timestamp"] for r in rows if r["alert"] == "1"]
    assert alerting, "the memory leak that starts at 14:00 was never alerted"
    # The leak starts at 14:00; nothing before it may alert, and it must be caught the same afternoon.
    assert "2026-11-23T14:00:00Z" < alerting[0] < "2026-11-23T17:00:00Z", alerting[0]


def test_demo_names_the_leak_as_the_cause() -> None:
    run = subprocess.run([sys.executable, str(ROOT / "hack" / "demo.py")],
                         check=True, capture_output=True, text=True)
    lines = run.stdout.splitlines()
    cause = next(line for line in lines if line.startswith("3. Most likely cause"))
    assert cause.split(": ", 1)[1].startswith("memory_bytes"), cause
    anomalous = lines[lines.index("2. Anomalous metrics at the alert:") + 1]
    assert anomalous.split()[0] == "memory_bytes", anomalous
    assert "Traceback" not in run.stderr
