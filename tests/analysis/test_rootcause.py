"""Tests of :func:`ajan.analysis.rootcause.rank_root_causes`."""

from __future__ import annotations

import numpy as np
import pytest

from ajan.analysis.rootcause import rank_root_causes


def test_known_answer() -> None:
    z = np.zeros((3, 50))
    z[1, 20:40] = 9.0  # off for the whole interval, from its first point
    z[2, 25:40] = -9.0  # as far off, but joins 5 points later (sign does not matter)
    z[0, 30:40] = 3.0  # half the interval, mildly
    res = rank_root_causes(z, 20, 40)
    assert res.order.tolist() == [1, 2, 0]
    # Each metric's |z| in [20, 40) is a single non-zero value on at least a quarter of the points, so
    # its upper quantiles (upper quartile up to the max) are that value.
    np.testing.assert_allclose(res.magnitude, [3.0, 9.0, 9.0])
    assert res.onset.tolist() == [30, 20, 25]  # absolute indices of the first |z| >= 3
    assert 0.0 < res.score[0] < res.score[2] < res.score[1] < 1.0
    assert rank_root_causes(z, 25, 40).score[1] == rank_root_causes(z, 25, 40).score[2]  # joined together


def test_score_is_one_half_at_z_half_from_the_first_point() -> None:
    z = np.zeros((2, 30))
    z[0, 10:] = 6.0
    z[1, 10:] = 4.0
    res = rank_root_causes(z, 10, 30)
    assert res.score[0] == pytest.approx(0.5)
    assert rank_root_causes(z, 10, 30, z_half=4.0).score[1] == pytest.approx(0.5)


def test_a_late_or_never_crossing_metric_is_discounted() -> None:
    z = np.zeros((2, 30))
    z[0, 10:30] = 2.0  # below the onset threshold (6 / 2 = 3) throughout
    res = rank_root_causes(z, 10, 30)
    assert res.onset.tolist() == [-1, -1]
    assert res.score[1] == 0.0 and res.score[0] > 0.0
    # The same deviation counted as crossing at the first point scores higher ...
    crossing = rank_root_causes(z, 10, 30, onset_z=1.0)
    assert crossing.onset[0] == 10 and crossing.score[0] > res.score[0]
    # ... and without the onset weight the onset does not matter.
    assert rank_root_causes(z, 10, 30, onset_weight=0.0).score[0] == pytest.approx(
        rank_root_causes(z, 10, 30, onset_z=1.0, onset_weight=0.0).score[0]
    )


def test_ties_keep_index_order_and_nan_is_no_evidence() -> None:
    z = np.zeros((4, 20))
    z[[1, 3], 5:] = 7.0
    z[2] = np.nan
    res = rank_root_causes(z, 5, 20)
    assert res.order.tolist() == [1, 3, 0, 2]
    assert res.score[2] == 0.0 and res.onset[2] == -1


@pytest.mark.parametrize(("start", "end"), [(-1, 10), (10, 10), (12, 10), (0, 51)])
def test_bad_interval_raises(start: int, end: int) -> None:
    with pytest.raises(ValueError, match="start"):
        rank_root_causes(np.zeros((2, 50)), start, end)


def test_bad_shape_raises() -> None:
    with pytest.raises(ValueError, match="shaped"):
        rank_root_causes(np.zeros(50), 0, 10)


def test_whole_range_is_allowed() -> None:
    z = np.zeros((2, 50))
    z[1, 49] = 9.0
    res = rank_root_causes(z, 0, 50)
    assert res.onset.tolist() == [-1, 49]
