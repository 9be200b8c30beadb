"""The cross-dataset calibration check: a two-parameter map fitted on one dataset's openings."""

from __future__ import annotations

import numpy as np
import pytest

from ajan.evaluation.calibration import cross_dataset, platt_apply, platt_fit
from ajan.evaluation.severity import expected_calibration_error


def overconfident(seed: int, n: int = 4000) -> tuple[np.ndarray, np.ndarray]:
    """Confidences whose true probability is sigmoid(0.5 logit(c) - 1): far below what they say."""
    rng = np.random.default_rng(seed)
    c = rng.uniform(0.5, 0.999, n)
    logit = np.log(c / (1 - c))
    p = 1 / (1 + np.exp(-(0.5 * logit - 1.0)))
    return c, rng.random(n) < p


def test_the_map_recovers_the_true_one_and_calibrates_new_data() -> None:
    c, real = overconfident(1)
    a, b = platt_fit(c, real)
    assert a == pytest.approx(0.5, abs=0.1) and b == pytest.approx(-1.0, abs=0.2)
    fresh, fresh_real = overconfident(2)
    before = expected_calibration_error(fresh, fresh_real)
    after = expected_calibration_error(platt_apply((a, b), fresh), fresh_real)
    assert before > 0.2 and after < 0.03, (before, after)


def test_a_dataset_with_one_kind_of_opening_is_checked_but_not_fitted() -> None:
    c, real = overconfident(3, 200)
    rows = cross_dataset({"mixed": list(zip(c.tolist(), real.tolist(), strict=True)),
                          "all-real": [(0.9, True), (0.8, True)]})  # fmt: skip
    assert {(r["fit"], r["check"]) for r in rows} == {("mixed", "mixed"), ("mixed", "all-real")}
    with pytest.raises(ValueError, match="both real and false"):
        platt_fit([0.9, 0.8], [True, True])
