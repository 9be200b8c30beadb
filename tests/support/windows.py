"""Synthetic metric windows of a four-metric checkout policy, for the pure tests of `assess` and of
the decision features built from it."""

from __future__ import annotations

from typing import Any, Final

import numpy as np

from ajan.models import CorrelationPolicySpec
from ajan.services.assessment import MetricWindow

NAMES: Final = ("latency", "errors", "queue", "throughput")
STEP: Final = 30.0
ROWS: Final = 120  # the default policy: a 1h window every 30s


def spec(**overrides: Any) -> CorrelationPolicySpec:
    """Latency and errors as SLO metrics; queue and (falling) throughput as signals."""
    body: dict[str, Any] = {
        "targetRef": {"name": "checkout"},
        "metrics": [
            {"name": "latency", "query": "q1", "role": "slo"},
            {"name": "errors", "query": "q2", "role": "slo"},
            {"name": "queue", "query": "q3", "role": "signal"},
            {"name": "throughput", "query": "q4", "role": "signal", "objective": "min"},
        ],
    }
    body.update(overrides)
    return CorrelationPolicySpec.model_validate(body)


def healthy(seed: int = 1, rows: int = ROWS) -> np.ndarray:
    """``rows`` rows of the four metrics, 5 % noise around fixed levels."""
    rng = np.random.default_rng(seed)
    level = np.array([0.1, 0.002, 5.0, 50.0])
    return level * (1 + 0.05 * rng.normal(size=(rows, 4)))


def window(values: np.ndarray, names: tuple[str, ...] = NAMES) -> MetricWindow:
    """``values`` on a 30 s grid, its columns named ``names``."""
    return MetricWindow(names, 1.7e9 + np.arange(values.shape[0]) * STEP, values, STEP)
