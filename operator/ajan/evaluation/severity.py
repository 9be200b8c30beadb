"""Evaluation of the severity model on its held-out test split: accuracy and calibration.

Run ``python -m ajan.evaluation.severity`` after ``python -m ajan.evaluation.severity_data`` (the data)
and ``hack/train_severity.py`` (the model). On the test split (groups never seen in training or
calibration), per dataset and overall, it prints:

* per-class precision and recall of the most probable class, and the confusion matrix;
* the Brier score and the expected calibration error (ECE, :data:`ECE_BINS` equal-width bins) of
  ``incident_probability`` against "the label is warning or critical", and of the top-class
  probability against "the top class is right";
* each before (T = 1) and after temperature scaling, and for the rule fallback;

and draws the reliability diagram ``docs/img/severity-reliability.png``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from ajan.clients.severity_model import DEFAULT_MODEL, load_model
from ajan.evaluation.severity_data import CLASS_NAMES, DEFAULT_OUTPUT, load
from ajan.services.features import FEATURE_NAMES
from ajan.services.severity import RuleSeverityClassifier, softmax

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

ECE_BINS: Final = 15
#: The goal of issue 5 for the ECE of ``incident_probability``.
ECE_GOAL: Final = 0.05
DEFAULT_FIGURE: Final = Path(__file__).resolve().parents[3] / "docs" / "img" / "severity-reliability.png"


def brier(prob: npt.ArrayLike, outcome: npt.ArrayLike) -> float:
    """Mean squared difference between a probability and a 0/1 outcome (0 is perfect).

    Examples
    --------
    >>> brier([0.9, 0.2], [1, 0])
    0.025
    """
    p, y = np.asarray(prob, dtype=float), np.asarray(outcome, dtype=float)
    return round(float(np.mean((p - y) ** 2)), 12) if p.size else float("nan")


def reliability(
    prob: npt.ArrayLike, outcome: npt.ArrayLike, bins: int = ECE_BINS
) -> tuple[FloatArray, FloatArray, IntArray]:
    """Per equal-width bin of [0, 1]: mean probability, observed frequency and count.

    Empty bins give NaN means and a zero count. A probability of exactly 1 falls in the last bin.
    """
    p, y = np.asarray(prob, dtype=float), np.asarray(outcome, dtype=float)
    index = np.minimum((p * bins).astype(int), bins - 1)
    count = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p = np.bincount(index, weights=p, minlength=bins) / count
        freq = np.bincount(index, weights=y, minlength=bins) / count
    return mean_p, freq, count.astype(np.int64)


def expected_calibration_error(prob: npt.ArrayLike, outcome: npt.ArrayLike, bins: int = ECE_BINS) -> float:
    """ECE: the count-weighted mean |observed frequency - mean probability| over equal-width bins.

    Examples
    --------
    >>> expected_calibration_error([0.25, 0.25, 0.25, 0.25], [1, 0, 0, 0])
    0.0
    """
    mean_p, freq, count = reliability(prob, outcome, bins)
    if count.sum() == 0:
        return float("nan")
    used = count > 0
    return float(np.sum(count[used] * np.abs(freq[used] - mean_p[used])) / count.sum())


def roc_auc(prob: npt.ArrayLike, outcome: npt.ArrayLike) -> float:
    """Area under the ROC curve (Mann-Whitney, ties counted half); NaN without both outcomes.

    Calibration says whether a probability means what it says; this says whether it ranks the
    incidents above the rest at all, whatever the threshold.

    Examples
    --------
    >>> roc_auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])
    0.75
    """
    p, y = np.asarray(prob, dtype=float), np.asarray(outcome, dtype=bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(p, kind="mergesort")
    ranks = np.empty(p.size)
    ranks[order] = np.arange(1, p.size + 1)
    # Average ranks over ties.
    _, inverse, counts = np.unique(p, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    ranks = (sums / counts)[inverse]
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def confusion(labels: npt.ArrayLike, predicted: npt.ArrayLike, n_classes: int = 3) -> IntArray:
    """Confusion matrix, rows true class, columns predicted class."""
    y, p = np.asarray(labels, dtype=np.int64), np.asarray(predicted, dtype=np.int64)
    return np.bincount(y * n_classes + p, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def precision_recall(matrix: IntArray) -> tuple[FloatArray, FloatArray]:
    """Per-class precision and recall of a confusion matrix (NaN where undefined)."""
    tp = np.diag(matrix).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return tp / matrix.sum(axis=0), tp / matrix.sum(axis=1)


@dataclass(frozen=True)
class Scores:
    """Accuracy and calibration of one set of probabilities on one set of windows.

    n: windows; confusion: (3, 3); precision, recall: per class; brier_incident, ece_incident: of
    P(warning) + P(critical) vs a warning or critical label; brier_top, ece_top: of the top-class
    probability vs the top class being right; auc_incident: ROC AUC of P(warning) + P(critical).
    """

    n: int
    confusion: IntArray
    precision: FloatArray
    recall: FloatArray
    brier_incident: float
    ece_incident: float
    brier_top: float
    ece_top: float
    auc_incident: float


def score(prob: FloatArray, labels: IntArray, predicted: IntArray | None = None) -> Scores:
    """Scores of probabilities ``prob`` (n, 3) against ``labels`` (n,); predicted class defaults to argmax."""
    pred = np.argmax(prob, axis=1) if predicted is None else predicted
    matrix = confusion(labels, pred)
    precision, recall = precision_recall(matrix)
    incident, is_incident = prob[:, 1] + prob[:, 2], labels != 0
    top, right = prob[np.arange(labels.size), pred], pred == labels
    return Scores(
        n=int(labels.size),
        confusion=matrix,
        precision=precision,
        recall=recall,
        brier_incident=brier(incident, is_incident),
        ece_incident=expected_calibration_error(incident, is_incident),
        brier_top=brier(top, right),
        ece_top=expected_calibration_error(top, right),
        auc_incident=roc_auc(incident, is_incident),
    )


def evaluate(
    data: Path = DEFAULT_OUTPUT, model_path: Path = DEFAULT_MODEL, split: str = "test"
) -> dict[str, Any]:
    """Probabilities of the shipped model (T = 1 and calibrated) and of the rules on one split.

    Returns
    -------
    dict
        ``temperature``, ``labels``, ``dataset`` and, per variant (``"uncalibrated"``,
        ``"calibrated"``, ``"rules"``), the probabilities (n, 3) and the predicted classes.
    """
    arrays, _ = load(data)
    mask = arrays["split"] == split
    x, labels = arrays["features"][mask], arrays["labels"][mask].astype(np.int64)
    model = load_model(model_path)
    logits = model.logits(x)
    rules = RuleSeverityClassifier()
    rule_verdicts = rules.classify(x)
    variants = {
        "uncalibrated": softmax(logits, 1.0),
        "calibrated": softmax(logits, model.info.temperature),
        "rules": rules.probabilities(x),
    }
    predicted = {k: np.argmax(v, axis=1) for k, v in variants.items()}
    predicted["rules"] = np.array(
        [CLASS_NAMES.index(v.severity.value) for v in rule_verdicts], dtype=np.int64
    )
    return {
        "temperature": model.info.temperature,
        "labels": labels,
        "dataset": arrays["dataset"][mask],
        "probabilities": variants,
        "predicted": predicted,
    }


def _fmt(x: float) -> str:
    return "—" if not np.isfinite(x) else f"{x:.3f}"


def report(result: dict[str, Any]) -> str:
    """Markdown tables of the scores per dataset and overall, for each variant."""
    labels, datasets = result["labels"], result["dataset"]
    groups = [*sorted(set(datasets.tolist())), "all"]
    lines = [
        f"Temperature {result['temperature']:.3f}; ECE over {ECE_BINS} equal-width bins; "
        f"goal ECE <= {ECE_GOAL}.",
        "",
        "| dataset | variant | n | P/R info | P/R warning | P/R critical "
        "| Brier inc. | ECE inc. | AUC inc. | Brier top | ECE top |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    confusions = []
    for ds in groups:
        mask = np.ones(labels.size, dtype=bool) if ds == "all" else datasets == ds
        for variant in ("uncalibrated", "calibrated", "rules"):
            s = score(
                result["probabilities"][variant][mask], labels[mask], result["predicted"][variant][mask]
            )
            pr = " | ".join(f"{_fmt(p)} / {_fmt(r)}" for p, r in zip(s.precision, s.recall, strict=True))
            lines.append(
                f"| {ds} | {variant} | {s.n} | {pr} | {_fmt(s.brier_incident)} | {_fmt(s.ece_incident)} "
                f"| {_fmt(s.auc_incident)} "
                f"| {_fmt(s.brier_top)} | {_fmt(s.ece_top)} |"
            )
            if variant == "calibrated":
                confusions.append((ds, s.confusion))
    lines += [
        "",
        "Confusion matrices of the calibrated model (rows true info/warning/critical, columns predicted):",
        "",
    ]
    for ds, m in confusions:
        lines.append(f"- {ds}: " + "; ".join(" ".join(str(v) for v in row) for row in m.tolist()))
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path = DEFAULT_FIGURE) -> None:
    """Reliability diagram of the test split: incident probability and top-class probability."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels, datasets = result["labels"], result["dataset"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.6))
    for ax, what in zip(axes, ("incident", "top"), strict=True):
        ax.plot([0, 1], [0, 1], color="0.7", linestyle="--", linewidth=1)
        curves: list[tuple[str, BoolArray, str, str]] = [
            ("all, T = 1", np.ones(labels.size, dtype=bool), "uncalibrated", "o"),
            (f"all, T = {result['temperature']:.2f}", np.ones(labels.size, dtype=bool), "calibrated", "s"),
        ]
        curves += [
            (f"{ds}, T = {result['temperature']:.2f}", datasets == ds, "calibrated", ".")
            for ds in sorted(set(datasets.tolist()))
        ]
        for name, mask, variant, marker in curves:
            prob = result["probabilities"][variant][mask]
            y = labels[mask]
            if what == "incident":
                p, outcome = prob[:, 1] + prob[:, 2], y != 0
            else:
                pred = np.argmax(prob, axis=1)
                p, outcome = prob[np.arange(y.size), pred], pred == y
            mean_p, freq, count = reliability(p, outcome)
            used = count > 0
            ece = expected_calibration_error(p, outcome)
            ax.plot(
                mean_p[used],
                freq[used],
                marker=marker,
                linewidth=1.2 if marker != "." else 0.8,
                label=f"{name} (ECE {ece:.3f})",
            )
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("predicted probability")
        ax.set_ylabel("observed frequency")
        ax.set_title("P(warning or critical)" if what == "incident" else "top-class probability")
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle(f"Severity model reliability, held-out test split ({labels.size} windows, {ECE_BINS} bins)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def heuristic_report(data: Path = DEFAULT_OUTPUT, split: str = "test") -> str:
    """How good the operator's own decision confidence (the ``confidence`` feature) is as a
    probability of an incident, per dataset: the number the ladder thresholds today."""
    arrays, _ = load(data)
    mask = arrays["split"] == split
    confidence = arrays["features"][mask][:, FEATURE_NAMES.index("confidence")].astype(np.float64)
    incident = (arrays["labels"][mask] != 0).astype(np.float64)
    datasets = arrays["dataset"][mask]
    lines = [
        "| dataset | n | incident rate | Brier | ECE | AUC | share >= 0.5 | incidents among them |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for ds in [*sorted(set(datasets.tolist())), "all"]:
        m = np.ones(incident.size, dtype=bool) if ds == "all" else datasets == ds
        acting = m & (confidence >= 0.5)
        precision = float(incident[acting].mean()) if acting.any() else float("nan")
        lines.append(
            f"| {ds} | {int(m.sum())} | {_fmt(float(incident[m].mean()))} "
            f"| {_fmt(brier(confidence[m], incident[m]))} "
            f"| {_fmt(expected_calibration_error(confidence[m], incident[m]))} "
            f"| {_fmt(roc_auc(confidence[m], incident[m]))} | {_fmt(float(acting.sum() / m.sum()))} "
            f"| {_fmt(precision)} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: print the tables and write the reliability diagram."""
    parser = argparse.ArgumentParser(
        prog="python -m ajan.evaluation.severity", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--split", default="test", choices=("train", "calibration", "test"))
    parser.add_argument("--figure", type=Path, default=DEFAULT_FIGURE)
    args = parser.parse_args(argv)
    result = evaluate(args.data, args.model, args.split)
    print(f"split {args.split} of {args.data}, model {args.model}")
    print(report(result))
    print("\nThe operator's decision confidence (the heuristic) as a probability of an incident:\n")
    print(heuristic_report(args.data, args.split))
    if args.figure:
        plot(result, args.figure)
        print(f"wrote {args.figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
