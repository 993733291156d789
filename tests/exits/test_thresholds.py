"""PAME's threshold arithmetic on hand-made score arrays."""
from __future__ import annotations

import numpy as np
import pytest

from configs.errors import UserError
from exits.thresholds import (check_tolerance, choose_threshold, choose_thresholds, overall_precision,
                              propagate_budget, sweep, threshold_grid)

CONF = np.array([0.99, 0.97, 0.9, 0.6, 0.3])
EXIT_OK = np.array([1, 1, 0, 1, 0], bool)
FINAL_OK = np.array([1, 1, 1, 1, 0], bool)  # the original: 0.8


def test_grid_is_finer_near_one():
    g = threshold_grid()
    assert g[0] == pytest.approx(0.05) and g[-1] == 1.0
    assert {0.5, 0.95, 0.97, 0.99, 0.995, 0.999} <= set(np.round(g, 4))
    steps = np.diff(g)
    assert steps[g[:-1] >= 0.99].max() < 0.005 < steps[g[:-1] < 0.9].min()
    assert set(np.round(np.arange(1, 20) * 0.05, 4)) <= set(np.round(g, 4))  # PAME's own steps


def test_metric_is_exit_and_moveon_precision():
    rows = {round(t, 4): (r, a, m) for t, r, a, m in sweep(CONF, EXIT_OK, FINAL_OK)}
    assert rows[0.95] == pytest.approx((0.4, 1.0, 0.8))  # 2 leave (both right), 3 move on (2 right)
    assert rows[0.85] == pytest.approx((0.6, 2 / 3, 0.6))  # the 0.9 sample leaves wrong
    assert rows[0.05] == pytest.approx((1.0, 0.6, 0.6))


def test_fewest_moving_on_within_the_target():
    ch = choose_threshold(CONF, EXIT_OK, FINAL_OK, target=0.8)
    assert (ch.threshold, ch.exit_ratio, ch.exit_acc, ch.metric) == (pytest.approx(0.97), 0.4, 1.0, 0.8)
    loose = choose_threshold(CONF, EXIT_OK, FINAL_OK, target=0.6)
    assert loose.exit_ratio == 1.0 and loose.threshold == pytest.approx(0.3)


def test_no_threshold_reaches_an_impossible_target():
    ch = choose_threshold(CONF, EXIT_OK, FINAL_OK, target=0.95)
    assert ch.threshold is None and ch.exit_ratio == 0.0 and ch.metric == pytest.approx(0.8)


def test_budget_propagates_to_the_samples_that_moved_on():
    assert propagate_budget(0.9, exit_acc=1.0, moveon_ratio=0.5) == pytest.approx(0.8)
    assert propagate_budget(0.9, exit_acc=0.8, moveon_ratio=0.5) == pytest.approx(1.0)
    assert propagate_budget(0.9, exit_acc=1.0, moveon_ratio=0.0) == 0.0


def test_second_exit_sees_only_what_moved_on():
    # exit 1 lets samples 0 and 1 leave (as above); exit 2 then sees samples 2, 3, 4
    conf2 = np.array([0.1, 0.1, 0.99, 0.98, 0.2])
    ok2 = np.array([0, 0, 1, 1, 0], bool)
    first, second = choose_thresholds([CONF, conf2], [EXIT_OK, ok2], FINAL_OK, tolerance=1.0)
    assert first.threshold == pytest.approx(0.97) and second.samples == 3
    assert second.target == pytest.approx((0.8 - 1.0 * 0.4) / 0.6)  # 2/3 on the 3 samples left
    assert second.exit_ratio == 1.0  # all three leave: sample 4 is wrong at the final head too
    prec, ratios = overall_precision([CONF, conf2], [EXIT_OK, ok2], FINAL_OK, [first.threshold, second.threshold])
    assert prec == pytest.approx(0.8) and ratios == pytest.approx([0.4, 0.6, 0.0])


def test_agreement_with_the_original_needs_no_labels():
    agree = np.array([1, 1, 0, 1, 1], bool)
    ch, = choose_thresholds([CONF], [agree], np.ones(5, bool), tolerance=0.8)
    assert ch.target == pytest.approx(0.8) and ch.exit_ratio == pytest.approx(1.0)  # one disagreement in five


@pytest.mark.parametrize("bad", [0, -0.5, 1.01, "x", float("nan")])
def test_tolerance_outside_0_1_is_refused(bad):
    with pytest.raises(UserError, match=r"--tolerance = .*\(0, 1\]"):
        check_tolerance(bad)


def test_a_margin_holds_the_tolerance_above_the_validation_noise():
    from exits.thresholds import choose_thresholds, with_margin

    assert with_margin(0.99, 5000, 0.0) == 0.99
    assert with_margin(0.99, 5000, 2.0) == pytest.approx(0.99 + 2 * np.sqrt(0.99 * 0.01 / 5000))
    assert with_margin(0.999, 10, 50.0) == 1.0
    # 1000 samples: every tenth of the less confident half disagrees with the original at the exit
    conf = np.linspace(0.01, 1.0, 1000)
    agree = ~((np.arange(1000) % 10 == 0) & (conf < 0.5))
    plain, = choose_thresholds([conf], [agree], np.ones(1000, bool), 0.99)
    strict, = choose_thresholds([conf], [agree], np.ones(1000, bool), 0.99, margin=3.0)
    assert plain.metric >= 0.99 and strict.metric >= with_margin(0.99, 1000, 3.0)
    assert strict.threshold > plain.threshold and strict.exit_ratio < plain.exit_ratio
