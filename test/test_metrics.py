"""Hand-checkable tests of core.metrics: every expected number below is worked out in the comments."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from stereo_depth_ros.core import metrics as m

NAN = float("nan")

# GT-valid pixels (6): 10, 20, 100, 10, 50, 8 (gt 0 and NaN are not evaluated).
GT = np.array([[10.0, 20.0, 100.0, 0.0], [10.0, NAN, 50.0, 8.0]], dtype=np.float32)
# Predictions at those pixels: 11.5 (err 1.5), 20.2 (0.2), 96 (4.0, < 5 % of 100), NaN (hole),
# 47.5 (2.5), -1 (hole). The 5 at the GT-invalid pixel and the 7 at the NaN GT pixel are ignored.
PRED = np.array([[11.5, 20.2, 96.0, 5.0], [NAN, 7.0, 47.5, -1.0]], dtype=np.float32)


def test_disparity_metrics_all_pixels_count_holes_as_errors():
    ev = m.evaluate_disparity(PRED, GT)
    a = ev.all
    assert a.pixels == 6 and ev.gt_pixels == 6 and ev.predicted_pixels == 4
    # EPE: holes read as d = 0, error |gt| = 10 and 8: (1.5 + 0.2 + 4 + 10 + 2.5 + 8) / 6
    assert a.epe == pytest.approx(26.2 / 6)
    # bad-1: 1.5, 4, 2.5 + 2 holes = 5/6; bad-2: 4, 2.5 + holes = 4/6; bad-3: 4 + holes = 3/6
    assert a.bad1_pct == pytest.approx(500 / 6)
    assert a.bad2_pct == pytest.approx(400 / 6)
    assert a.bad3_pct == pytest.approx(50.0)
    # D1: the 4 px error at gt 100 is < 5 % (5 px), so only the 2 holes: 2/6
    assert a.d1_all == pytest.approx(200 / 6)
    assert ev.density == pytest.approx(400 / 6)
    # no calibration -> no depth metrics
    assert a.depth_pixels == 0 and math.isnan(a.abs_rel) and math.isnan(a.rmse) and math.isnan(a.delta1_pct)


def test_disparity_metrics_own_valid_pixels():
    v = m.evaluate_disparity(PRED, GT).valid
    assert v.pixels == 4
    assert v.epe == pytest.approx((1.5 + 0.2 + 4.0 + 2.5) / 4)
    assert v.bad1_pct == pytest.approx(75.0)  # 1.5, 4, 2.5
    assert v.bad2_pct == pytest.approx(50.0)  # 4, 2.5
    assert v.bad3_pct == pytest.approx(25.0)  # 4
    assert v.d1_all == pytest.approx(0.0)


def test_d1_needs_both_thresholds():
    gt = np.array([[10.0, 10.0, 100.0, 100.0]])
    pred = np.array([[13.5, 12.9, 94.0, 96.0]])  # errors 3.5 (> 3, > 0.5), 2.9, 6 (> 3, > 5), 4 (< 5)
    ev = m.evaluate_disparity(pred, gt)
    assert ev.all.d1 == 2 and ev.all.bad3 == 3
    assert ev.all.d1_all == pytest.approx(50.0)


def test_bad_thresholds_are_strict():
    gt = np.array([[10.0, 10.0, 10.0]])
    pred = np.array([[11.0, 12.0, 13.0]])  # errors exactly 1, 2, 3
    a = m.evaluate_disparity(pred, gt).all
    assert (a.bad1, a.bad2, a.bad3) == (2, 1, 0)


def test_depth_metrics_with_holes_clamp_and_range():
    # f*B = 12: GT disparities 4, 6, 2, 1 -> depths 3, 2, 6, 12 m. With max_depth 10 the 12 m pixel
    # is left out of the depth metrics (but not of the disparity metrics).
    gt = np.array([[4.0, 6.0, 2.0, 1.0]])
    pred = np.array([[3.0, 6.0, NAN, 1.0]])  # depths 4, 2, hole (-> max_depth 10), 12
    ev = m.evaluate_disparity(pred, gt, focal=24.0, baseline=0.5, max_depth=10.0)
    a, v = ev.all, ev.valid
    assert a.pixels == 4 and a.depth_pixels == 3
    # AbsRel: |4-3|/3 + 0 + |10-6|/6 = 1/3 + 2/3 -> 1/3
    assert a.abs_rel == pytest.approx(1 / 3)
    # RMSE: sqrt((1 + 0 + 16) / 3)
    assert a.rmse == pytest.approx(math.sqrt(17 / 3))
    # delta: 4/3 > 1.25 fails, 2/2 passes, the hole fails -> 1/3
    assert a.delta1_pct == pytest.approx(100 / 3)
    assert v.depth_pixels == 2
    assert v.abs_rel == pytest.approx(1 / 6)
    assert v.rmse == pytest.approx(math.sqrt(0.5))
    assert v.delta1_pct == pytest.approx(50.0)


def test_predicted_depth_is_clamped():
    # f*B = 10: GT 5 px -> 2 m; prediction 0.1 px -> 100 m, clamped to max_depth 20 m.
    ev = m.evaluate_disparity(np.array([[0.1]]), np.array([[5.0]]), focal=10.0, baseline=1.0, max_depth=20.0)
    assert ev.valid.rmse == pytest.approx(18.0)
    assert ev.valid.abs_rel == pytest.approx(9.0)
    # same error as a hole at that pixel in the "all" mode
    hole = m.evaluate_disparity(np.array([[NAN]]), np.array([[5.0]]), focal=10.0, baseline=1.0, max_depth=20.0)
    assert hole.all.rmse == pytest.approx(18.0) and hole.valid.depth_pixels == 0


def test_perfect_prediction():
    gt = np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32)
    ev = m.evaluate_disparity(gt.copy(), gt, focal=100.0, baseline=0.1)
    for s in (ev.all, ev.valid):
        assert s.epe == 0 and s.bad1_pct == 0 and s.d1_all == 0
        assert s.abs_rel == pytest.approx(0) and s.rmse == pytest.approx(0, abs=1e-9) and s.delta1_pct == 100
    assert ev.density == 100


def test_hole_kinds_and_all_holes():
    gt = np.array([[5.0, 5.0, 5.0, 5.0]])
    pred = np.array([[NAN, np.inf, 0.0, -2.0]])
    ev = m.evaluate_disparity(pred, gt)
    assert ev.predicted_pixels == 0 and ev.density == 0
    assert ev.all.epe == 5.0 and ev.all.bad3_pct == 100 and ev.all.d1_all == 100
    assert ev.valid.pixels == 0 and math.isnan(ev.valid.epe)
    assert m.prediction_valid_mask(pred).sum() == 0


def test_mask_restricts_evaluation():
    mask = np.array([[True, True, False, True], [False, True, True, True]])
    # evaluated: (0,0) err 1.5, (0,1) 0.2, (1,2) 2.5, (1,3) hole err 8; (0,3) gt 0 and (1,1) NaN stay out
    ev = m.evaluate_disparity(PRED, GT, mask=mask)
    assert ev.gt_pixels == 4 and ev.predicted_pixels == 3
    assert ev.all.epe == pytest.approx((1.5 + 0.2 + 2.5 + 8) / 4)
    assert ev.valid.epe == pytest.approx((1.5 + 0.2 + 2.5) / 3)
    # another method's valid pixels as the mask: the network evaluated where SGBM has values
    ev2 = m.evaluate_disparity(GT.copy(), GT, mask=m.prediction_valid_mask(PRED))
    assert ev2.gt_pixels == 4 and ev2.all.epe == 0


def test_aggregate_is_pixel_weighted():
    a = m.evaluate_disparity(np.array([[11.0]]), np.array([[10.0]]))  # 1 px, error 1
    b = m.evaluate_disparity(np.array([[13.0, 13.0, NAN]]), np.array([[10.0, 10.0, 10.0]]))  # 3 px
    total = m.aggregate([a, b])
    assert total.gt_pixels == 4 and total.predicted_pixels == 3
    # (1 + 3 + 3 + 10) / 4, not the mean of per-sample means (1 + 16/3) / 2
    assert total.all.epe == pytest.approx(17 / 4)
    assert total.valid.epe == pytest.approx(7 / 3)
    assert total.all.bad2_pct == pytest.approx(75.0)
    assert total.density == pytest.approx(75.0)
    # RMSE aggregates through the squared-error sums
    c = m.evaluate_disparity(np.array([[2.0]]), np.array([[1.0]]), focal=1.0, baseline=1.0)  # 0.5 vs 1 m
    d = m.evaluate_disparity(np.array([[1.0, 1.0]]), np.array([[1.0, 1.0]]), focal=1.0, baseline=1.0)
    assert m.aggregate([c, d]).all.rmse == pytest.approx(math.sqrt(0.25 / 3))
    empty = m.aggregate([])
    assert empty.gt_pixels == 0 and math.isnan(empty.all.epe) and math.isnan(empty.density)


def test_to_dict_is_json_serialisable():
    ev = m.evaluate_disparity(PRED, GT, focal=100.0, baseline=0.5)
    d = ev.to_dict(include_sums=True)
    assert set(d) >= {"all", "valid", "density", "sums"}
    assert d["all"]["epe"] == pytest.approx(26.2 / 6)
    json.dumps(d)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(pred=[[1.0]], gt=np.ones((1, 1))), "pred: expected a numpy array"),
        (dict(pred=np.ones((1, 1)), gt=np.ones((1, 1, 1))), "gt: expected shape"),
        (dict(pred=np.ones((2, 1)), gt=np.ones((1, 1))), "pred: expected shape"),
        (dict(pred=np.ones((1, 1)), gt=np.array([["a"]])), "gt: expected a real-valued"),
        (dict(pred=np.ones((1, 1)), gt=np.ones((1, 1)), mask=np.ones((1, 1))), "mask: expected a boolean"),
        (dict(pred=np.ones((1, 1)), gt=np.ones((1, 1)), mask=np.ones((1, 2), bool)), "mask: expected shape"),
        (dict(pred=np.ones((1, 1)), gt=np.ones((1, 1)), focal=-1.0, baseline=0.1), "focal: expected"),
        (dict(pred=np.ones((1, 1)), gt=np.ones((1, 1)), focal=1.0, baseline=NAN), "baseline: expected"),
        (dict(pred=np.ones((1, 1)), gt=np.ones((1, 1)), focal=1.0), "both"),
        (dict(pred=np.ones((1, 1)), gt=np.ones((1, 1)), min_depth=5.0, max_depth=1.0), "min_depth < max_depth"),
    ],
)
def test_bad_input_raises(kwargs, message):
    with pytest.raises(ValueError, match=message):
        m.evaluate_disparity(**kwargs)


def test_aggregate_bad_input():
    with pytest.raises(ValueError, match="expected a DisparityEvaluation"):
        m.aggregate([{"epe": 1.0}])


def test_bias_is_the_mean_signed_error_with_holes_as_zero():
    ev = m.evaluate_disparity(PRED, GT)
    # signed errors: +1.5, +0.2, -4, hole -10, -2.5, hole -8
    assert ev.all.bias == pytest.approx((1.5 + 0.2 - 4.0 - 10.0 - 2.5 - 8.0) / 6)
    assert ev.valid.bias == pytest.approx((1.5 + 0.2 - 4.0 - 2.5) / 4)
    assert ev.to_dict()["all"]["bias"] == pytest.approx(ev.all.bias)


def test_evaluate_by_disparity_splits_by_ground_truth_band():
    # GT-valid pixels 10, 20, 100, 10, 50, 8 into [0, 16): 10, 10 (hole), 8 (hole); [16, 64): 20, 50; [64, inf): 100
    bands = m.evaluate_by_disparity(PRED, GT, edges=(0, 16, 64, math.inf))
    assert [b.gt_pixels for b in bands] == [3, 2, 1]
    near, mid, far = bands[2], bands[1], bands[0]
    assert far.all.epe == pytest.approx((1.5 + 10.0 + 8.0) / 3) and far.density == pytest.approx(100 / 3)
    assert mid.all.bias == pytest.approx((0.2 - 2.5) / 2) and mid.all.bad3 == 0
    assert near.all.bias == pytest.approx(-4.0) and near.all.bad3 == 1
    # the bands partition the evaluated pixels: their sums are the whole-image evaluation
    assert m.aggregate(bands) == m.evaluate_disparity(PRED, GT)
    # a mask is intersected with every band; an empty band has NaN metrics
    masked = m.evaluate_by_disparity(PRED, GT, edges=(0, 16, 64, 1000, 2000), mask=GT > 15)
    assert [b.gt_pixels for b in masked] == [0, 2, 1, 0] and math.isnan(masked[0].all.epe)


@pytest.mark.parametrize("edges", [(0,), (0, 16, 16), (32, 16), (0, NAN), ("a", 1)])
def test_evaluate_by_disparity_rejects_bad_edges(edges):
    with pytest.raises(ValueError, match="edges: expected"):
        m.evaluate_by_disparity(PRED, GT, edges=edges)


def test_evaluate_by_disparity_rejects_a_bad_mask():
    with pytest.raises(ValueError, match="mask: expected a boolean"):
        m.evaluate_by_disparity(PRED, GT, mask=np.ones((1, 1), bool))
