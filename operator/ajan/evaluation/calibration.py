"""Would a calibration map make the confidence at opening a probability on data it was not fitted on?

Input: the ``(confidence at opening, real)`` pairs of ``python -m ajan.evaluation.replay --openings
FILE``, per dataset. A map with two parameters (Platt scaling: a logistic regression on the logit of
the confidence) is fitted on one dataset's openings and checked on every other's: ECE before and
after, AUC (a monotone map leaves it unchanged), and the share of openings that were real. Two
parameters and no more, because the map must carry over to data nobody has seen: the datasets'
base rates differ, and a map that only matches one of them is no probability elsewhere.

Run ``python -m ajan.evaluation.calibration FILE``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
from scipy.optimize import minimize

from ajan.analysis.calibration import PlattMap, clipped_logit, platt
from ajan.evaluation.severity import expected_calibration_error, roc_auc

FloatArray = npt.NDArray[np.float64]


def platt_fit(confidence: npt.ArrayLike, real: npt.ArrayLike) -> tuple[float, float]:
    """``(a, b)`` of ``P(real) = sigmoid(a * logit(confidence) + b)``, by maximum likelihood.

    Raises
    ------
    ValueError
        Without both real and false openings: nothing to fit.
    """
    x, y = clipped_logit(confidence), np.asarray(real, dtype=np.float64)
    if not 0 < y.sum() < y.size:
        raise ValueError("a calibration needs both real and false openings")

    def loss(ab: FloatArray) -> float:
        z = ab[0] * x + ab[1]
        # log(1 + e^z) - y z, stably.
        return float(np.mean(np.logaddexp(0.0, z) - y * z))

    fitted = minimize(loss, np.array([1.0, 0.0]), method="BFGS")
    return float(fitted.x[0]), float(fitted.x[1])


def platt_apply(params: tuple[float, float], confidence: npt.ArrayLike) -> FloatArray:
    """The calibrated probabilities of ``confidence`` under ``params``."""
    return platt(confidence, PlattMap(*params))


def cross_dataset(openings: Mapping[str, Sequence[tuple[float, bool]]]) -> list[dict[str, object]]:
    """One row per (dataset fitted on, dataset checked): n, share real, AUC, ECE raw and mapped."""
    arrays = {
        name: (np.array([c for c, _ in pairs], dtype=np.float64), np.array([r for _, r in pairs], dtype=bool))
        for name, pairs in openings.items()
        if pairs
    }
    rows: list[dict[str, object]] = []
    for fit_on, (fc, fr) in arrays.items():
        if not 0 < fr.sum() < fr.size:
            continue  # all real (or all false): no map to fit
        params = platt_fit(fc, fr)
        for check, (cc, cr) in arrays.items():
            rows.append({
                "fit": fit_on, "check": check, "a": params[0], "b": params[1], "n": int(cc.size),
                "real": float(cr.mean()), "auc": roc_auc(cc, cr),
                "ece_raw": expected_calibration_error(cc, cr),
                "ece_mapped": expected_calibration_error(platt_apply(params, cc), cr),
            })  # fmt: skip
    return rows


def format_table(rows: Sequence[Mapping[str, object]]) -> str:
    """The rows as a markdown table (a fit on a dataset checked on itself is marked *in-sample*)."""
    out = [
        "| fitted on | checked on | map a, b | openings | real | AUC | ECE raw | ECE mapped |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        check = f"{r['check']} (in-sample)" if r["fit"] == r["check"] else str(r["check"])
        out.append(
            f"| {r['fit']} | {check} | {r['a']:.2f}, {r['b']:+.2f} | {r['n']} | {r['real']:.2f} "
            f"| {r['auc']:.2f} | {r['ece_raw']:.3f} | {r['ece_mapped']:.3f} |"
        )
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m ajan.evaluation.calibration FILE``: the cross-dataset table."""
    parser = argparse.ArgumentParser(prog="python -m ajan.evaluation.calibration", description=__doc__)
    parser.add_argument("openings", type=Path, help="JSON of `python -m ajan.evaluation.replay --openings`")
    args = parser.parse_args(argv)
    print(format_table(cross_dataset(json.loads(args.openings.read_text()))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
