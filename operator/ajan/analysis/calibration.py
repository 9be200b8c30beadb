"""How often a decision at a given confidence was right: a calibration map of the confidence.

Pure: a confidence in, a probability out. The map is Platt scaling (a logistic regression on the
logit of the confidence, two parameters), fitted on the incidents ajan's operator opened when it was
replayed over one labelled dataset and checked on another it never saw (docs/accuracy.md, "Is the
confidence a probability?"). Two parameters and no more, because the map must carry over to data
nobody has seen.

>>> round(float(platt(0.5, OPENING_MAP)), 3), round(float(platt(0.9999, OPENING_MAP)), 3)
(0.192, 0.774)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
from scipy.special import expit, logit

FloatArray = npt.NDArray[np.float64]

#: Confidences are clipped this far from 0 and 1 before their logit: beyond it the replays hold no
#: evidence that a still more confident opening is more often real.
EPS: Final = 1e-4


@dataclass(frozen=True)
class PlattMap:
    """``P(real) = sigmoid(a * logit(confidence) + b)``."""

    a: float
    b: float


#: Fitted on the 172 incidents ajan's operator opened over SMD (machines 1-2 to 1-8, every column a
#: two-sided SLO metric, 5-minute interval; 42 % real) by ``python -m ajan.evaluation.calibration``;
#: checked on NAB's 236 (32 % real), which it never saw: expected calibration error 0.385 -> 0.085.
OPENING_MAP: Final = PlattMap(a=0.29, b=-1.44)


def clipped_logit(confidence: npt.ArrayLike) -> FloatArray:
    """The logit a Platt map works on: of ``confidence`` clipped :data:`EPS` from 0 and 1."""
    result: FloatArray = logit(np.clip(np.asarray(confidence, dtype=np.float64), EPS, 1.0 - EPS))
    return result


def platt(confidence: npt.ArrayLike, params: PlattMap) -> FloatArray:
    """The calibrated probabilities of ``confidence`` (any shape, values in [0, 1]) under ``params``."""
    result: FloatArray = expit(params.a * clipped_logit(confidence) + params.b)
    return result
