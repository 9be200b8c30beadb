"""The house style holds for every commit CI sees: ruff's lint and format, and mypy's strict typing
of the package (pyproject's ``[tool.ruff]`` and ``[tool.mypy]``). A new file that is not formatted,
or a function without types, fails here rather than in the next reader's diff."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Final

import pytest

ROOT: Final = Path(__file__).resolve().parents[1]
TREES: Final = ("operator", "tests", "hack")


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, check=False
    )


@pytest.mark.parametrize(
    "command",
    [("ruff", "check", *TREES), ("ruff", "format", "--check", *TREES), ("mypy", "operator/ajan")],
    ids=["ruff-check", "ruff-format", "mypy"],
)
def test_the_tree_is_clean(command: tuple[str, ...]) -> None:
    result = _run(*command)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
