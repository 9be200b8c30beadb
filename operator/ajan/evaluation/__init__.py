"""Accuracy evaluation of the analysis core on labelled public datasets (../shared/data)."""

from __future__ import annotations

from pathlib import Path
from typing import Final

#: The labelled datasets, ``../shared/data`` beside the repository root
#: (operator/ajan/evaluation/ -> parents[3] is the root), as in a fresh clone and in CI.
SHARED_DATA: Final = Path(__file__).resolve().parents[3].parent / "shared" / "data"
