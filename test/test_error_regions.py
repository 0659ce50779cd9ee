"""core.error_regions on hand-built scenes: every region's pixels are worked out in the comments."""

from __future__ import annotations

import numpy as np
import pytest

from stereo_depth_ros.core import metrics
from stereo_depth_ros.core.error_regions import REGIONS, count_bad_by_region, error_regions

H, W = 40, 60


def _scene() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A fronto-parallel step: disparity 10 px in columns 0-29, 20 px in columns 30-59; row 0 has no
    ground truth. The image is a checkerboard (strong texture) except a flat block, rows 25-39 x
    columns 0-14; the occlusion mask covers rows 5-9 x columns 30-34."""
    gt = np.full((H, W), 10.0, dtype=np.float32)
    gt[:, 30:] = 20.0
    gt[0] = 0.0
    yy, xx = np.mgrid[:H, :W]
    image = ((yy // 2 + xx // 2) % 2).astype(np.float32)
    image[25:, :15] = 0.5
    occlusion = np.zeros((H, W), dtype=bool)
    occlusion[5:10, 30:35] = True
    return gt, image, occlusion


def test_regions_are_disjoint_and_cover_exactly_the_known_pixels():
    gt, image, occlusion = _scene()
    regions = error_regions(gt, image, occlusion)
    assert tuple(regions) == REGIONS
    stacked = np.stack([regions[r] for r in REGIONS]).astype(int)
    assert (stacked.sum(0) <= 1).all()
    np.testing.assert_array_equal(stacked.sum(0) == 1, metrics.gt_valid_mask(gt))


def test_edge_band_occlusion_and_weak_texture_where_the_scene_puts_them():
    gt, image, occlusion = _scene()
    regions = error_regions(gt, image, occlusion, edge_radius_px=3, weak_fraction=0.25)
    # The jump lies between columns 29 and 30 on rows 1-39: both are marked, then grown by 3 steps
    # (also up and down, but every row but 0 is marked already): columns 26-33 on rows 1-39, and
    # row 0 has no ground truth. The occluded block is taken out of the edges first.
    expected_edges = np.zeros((H, W), dtype=bool)
    expected_edges[1:, 26:34] = True
    expected_edges &= ~occlusion
    np.testing.assert_array_equal(regions["edges"], expected_edges)
    np.testing.assert_array_equal(regions["occluded"], occlusion)
    # The flat block has zero gradient on rows 26-39 x columns 0-13 (np.gradient's central
    # differences; one-sided at the image border), and the 9 px box (4 px of reach, replicated at the
    # border) keeps zero texture on rows 30-39 x columns 0-9: 100 of the 2340 known pixels. The
    # default quarter holds all of them; a 4 % share (93 pixels) holds nothing else.
    weak = regions["weak_texture"]
    assert weak[30:, :10].all()
    few = error_regions(gt, image, occlusion, weak_fraction=0.04)["weak_texture"]
    assert few.sum() >= 93 and not few[:30].any() and not few[:, 10:].any()
    assert not (weak & expected_edges).any()


def test_without_an_occlusion_mask_nothing_is_occluded_and_weak_fraction_zero_leaves_no_weak():
    gt, image, _ = _scene()
    regions = error_regions(gt, image, None, weak_fraction=0.0)
    assert not regions["occluded"].any() and not regions["weak_texture"].any()
    assert regions["rest"].sum() + regions["edges"].sum() == metrics.gt_valid_mask(gt).sum()


def test_bad_counts_per_region_add_up_to_the_whole_image_bad2_with_holes_as_errors():
    gt, image, occlusion = _scene()
    regions = error_regions(gt, image, occlusion)
    pred = gt.copy()
    pred[5:10, 30:35] = 10.0  # the occluded block takes the background's... wrong side: 10 px off
    pred[20, 27] = np.nan  # a hole on the edge band
    pred[30, 5] = 11.5  # 1.5 px off in the weak block: not bad-2
    pred[2, 50] = 23.0  # 3 px off in the rest
    counts = count_bad_by_region(pred, gt, regions, threshold_px=2.0)
    assert counts == {"occluded": 25, "edges": 1, "weak_texture": 0, "rest": 1}
    whole = metrics.evaluate_disparity(pred, gt).all
    assert sum(counts.values()) == whole.bad2


def test_bad_arguments_raise_value_errors_that_say_what_was_expected():
    gt, image, occlusion = _scene()
    with pytest.raises(ValueError, match="image: expected"):
        error_regions(gt, image[:10])
    with pytest.raises(ValueError, match="occlusion: expected a boolean"):
        error_regions(gt, image, occlusion.astype(np.uint8))
    with pytest.raises(ValueError, match="window_px"):
        error_regions(gt, image, window_px=8)
    with pytest.raises(ValueError, match="weak_fraction"):
        error_regions(gt, image, weak_fraction=1.5)
    with pytest.raises(ValueError, match="pred: expected"):
        count_bad_by_region(gt[:5], gt, {})
    with pytest.raises(ValueError, match="regions\\['x'\\]"):
        count_bad_by_region(gt, gt, {"x": np.ones((2, 2), dtype=bool)})
