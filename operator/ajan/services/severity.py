"""Severity of a decision: the calibrated model of issue 5, or documented rules when it cannot load.

A severity says how soon the SLO is in trouble (see :mod:`ajan.evaluation.severity_data` for how the
model's labels were made): ``critical``, an incident is happening in the scored rows; ``warning``, one
is expected within one window; ``info``, neither. ``incident_probability`` is the probability of
warning or critical.

The operator shows the probabilities in each plan's evidence (:func:`estimate`) but does not act on
them: measured on held-out data, the model is not yet good enough to (docs/severity.md).

Use :func:`load_classifier` at startup: it never raises, and says why it fell back to the rules.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal, Protocol

import numpy as np
import numpy.typing as npt

from ajan.clients.severity_model import ModelError, SeverityModel, load_model
from ajan.models import Severity, SeverityEstimate
from ajan.services.assessment import Assessment
from ajan.services.features import FEATURE_NAMES

logger = logging.getLogger(__name__)

#: Class order of the model's outputs and of :attr:`SeverityVerdict.probabilities`.
CLASSES: Final[tuple[Severity, Severity, Severity]] = (Severity.INFO, Severity.WARNING, Severity.CRITICAL)
#: Rule fallback: probability at or above which a window is an incident (warning or critical), and
#: at or above which the SLO part alone makes it critical. 0.5 is the heuristic's own midpoint, the
#: anomaly score of a metric at ``zHalf``.
RULE_INCIDENT: Final = 0.5
RULE_CRITICAL: Final = 0.5

_COLUMN: Final = {name: i for i, name in enumerate(FEATURE_NAMES)}


@dataclass(frozen=True)
class SeverityVerdict:
    """The severity of one decision.

    severity: the most probable class.
    probabilities: P(info), P(warning), P(critical), temperature-scaled (model) and summing to 1.
    incident_probability: P(warning) + P(critical).
    source: ``"model"`` or ``"rules"`` (the fallback, whose probabilities are not calibrated).
    """

    severity: Severity
    probabilities: tuple[float, float, float]
    incident_probability: float
    source: Literal["model", "rules"]


class SeverityClassifier(Protocol):
    """Anything that classifies a batch of decision features."""

    @property
    def source(self) -> Literal["model", "rules"]:
        """Where the verdicts come from."""
        ...

    def classify(self, features: npt.ArrayLike) -> list[SeverityVerdict]:
        """Verdicts of a batch of features, shape (n, F) in :data:`FEATURE_NAMES` order."""
        ...


def softmax(logits: npt.ArrayLike, temperature: float = 1.0) -> npt.NDArray[np.float64]:
    """Row-wise ``softmax(logits / temperature)`` in float64, shape (n, 3).

    Examples
    --------
    >>> softmax([[0.0, 0.0, np.log(2.0)]]).round(2).tolist()
    [[0.25, 0.25, 0.5]]
    """
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return np.asarray(e / e.sum(axis=1, keepdims=True), dtype=np.float64)


def _verdicts(p: npt.NDArray[np.float64], source: Literal["model", "rules"]) -> list[SeverityVerdict]:
    best = np.argmax(p, axis=1)
    return [
        SeverityVerdict(
            severity=CLASSES[int(k)],
            probabilities=(float(row[0]), float(row[1]), float(row[2])),
            incident_probability=float(row[1] + row[2]),
            source=source,
        )
        for row, k in zip(p, best, strict=True)
    ]


def _checked(features: npt.ArrayLike) -> npt.NDArray[np.float32]:
    x = np.asarray(features, dtype=np.float32)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or x.shape[1] != len(FEATURE_NAMES):
        raise ValueError(f"features shaped {x.shape}, expected (n, {len(FEATURE_NAMES)})")
    # A NaN would propagate through the model into every probability; features are built bounded,
    # so one here is a bug upstream: treat it as "no evidence" rather than crash a reconcile.
    return np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)


class ModelSeverityClassifier:
    """The trained model: logits from TFLite, divided by the calibration temperature, softmax."""

    def __init__(self, model: SeverityModel) -> None:
        """Wrap a loaded model; its features must be the ones this ajan computes.

        Raises
        ------
        ModelError
            When the model was trained on other features or classes.
        """
        if model.info.feature_names != FEATURE_NAMES:
            raise ModelError(
                f"severity model {model.path} was trained on features {list(model.info.feature_names)}, "
                f"this ajan computes {list(FEATURE_NAMES)}: retrain it (hack/train_severity.py)"
            )
        if model.info.class_names != tuple(c.value for c in CLASSES):
            raise ModelError(f"severity model {model.path} has classes {list(model.info.class_names)}")
        self.model = model

    @property
    def source(self) -> Literal["model", "rules"]:
        """Always ``"model"``."""
        return "model"

    def probabilities(self, features: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Calibrated class probabilities, shape (n, 3)."""
        return softmax(self.model.logits(_checked(features)), self.model.info.temperature)

    def classify(self, features: npt.ArrayLike) -> list[SeverityVerdict]:
        """Verdicts of a batch, shape (n, F)."""
        return _verdicts(self.probabilities(features), "model")


class RuleSeverityClassifier:
    """The fallback: the heuristic confidence of :mod:`ajan.services.assessment`, split in two.

    With ``c`` the coverage, ``s`` the SLO score, ``g`` the signal score and ``b`` the breach
    probability (features of :class:`~ajan.services.features.DecisionFeatures`):

    * ``P(critical) = c * s``: the SLO metrics are anomalous now;
    * ``P(warning) = c * (1 - s) * g * b``: not yet, but a signal is anomalous and predicted to
      drag an SLO metric into breach;
    * ``P(info)`` is the rest, so ``incident_probability`` is exactly the heuristic ``confidence``.

    The severity is ``critical`` when ``P(critical) >=`` :data:`RULE_CRITICAL`, else ``warning`` when
    ``incident_probability >=`` :data:`RULE_INCIDENT`, else ``info``. These probabilities are *not*
    calibrated (docs/severity.md measures the model's that are); ``source`` says ``"rules"``.
    """

    @property
    def source(self) -> Literal["model", "rules"]:
        """Always ``"rules"``."""
        return "rules"

    def probabilities(self, features: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Rule probabilities, shape (n, 3), as the class docstring defines them."""
        x = np.clip(_checked(features).astype(np.float64), 0.0, 1.0)
        cov, slo = x[:, _COLUMN["coverage"]], x[:, _COLUMN["slo_score"]]
        signal, breach = x[:, _COLUMN["signal_score"]], x[:, _COLUMN["breach_probability"]]
        critical = cov * slo
        warning = cov * (1.0 - slo) * signal * breach
        return np.column_stack([1.0 - critical - warning, warning, critical])

    def classify(self, features: npt.ArrayLike) -> list[SeverityVerdict]:
        """Verdicts of a batch, shape (n, F)."""
        p = self.probabilities(features)
        incident = p[:, 1] + p[:, 2]
        klass = np.where(p[:, 2] >= RULE_CRITICAL, 2, np.where(incident >= RULE_INCIDENT, 1, 0))
        return [
            SeverityVerdict(
                severity=CLASSES[int(k)],
                probabilities=(float(row[0]), float(row[1]), float(row[2])),
                incident_probability=float(row[1] + row[2]),
                source="rules",
            )
            for row, k in zip(p, klass, strict=True)
        ]


def load_classifier(path: Path | None = None) -> tuple[SeverityClassifier, str | None]:
    """The model's classifier, or the rules and why the model could not be used. Never raises.

    Parameters
    ----------
    path
        The tflite file (its json beside it); the model shipped in the package by default.

    Returns
    -------
    (SeverityClassifier, str or None)
        The classifier, and None, or a human-readable reason for the fallback to
        :class:`RuleSeverityClassifier`.
    """
    try:
        return ModelSeverityClassifier(load_model(path)), None
    except ModelError as err:
        reason = str(err)
    except Exception as err:
        reason = f"severity model could not be loaded: {type(err).__name__}: {err}"
    logger.warning("severity: using the rule fallback: %s", reason)
    return RuleSeverityClassifier(), reason


def estimate(assessment: Assessment, classifier: SeverityClassifier) -> Assessment:
    """The assessment with the classifier's severity probabilities in its evidence.

    Advisory: the decision (confidence, rung) is unchanged. The shipped model ranks incidents only a
    little better than chance on the labelled public data (docs/severity.md), so it is shown to the
    people who judge a plan and is not allowed to pause or abort anything.

    Raises
    ------
    ValueError
        When the assessment was made without ``detail`` and so has no features.
    """
    if assessment.features is None:
        raise ValueError("the assessment was made without detail: it has no severity features")
    verdict = classifier.classify(assessment.features.as_array()[None, :])[0]
    info, warning, critical = (round(float(p), 4) for p in verdict.probabilities)
    severity = SeverityEstimate(info=info, warning=warning, critical=critical, source=verdict.source)
    return dataclasses.replace(
        assessment, evidence=assessment.evidence.model_copy(update={"severity": severity})
    )
