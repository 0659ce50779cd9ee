"""Tests of the procedural stereo generator: determinism, exactness of the ground truth (checked by
warping the right image with the GT disparity), occlusion masks, sequences, domains, arguments."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from stereo_depth_ros.core.synthetic import (
    DOMAINS,
    DomainConfig,
    StereoSample,
    generate_sample,
    generate_sequence,
    get_domain,
    split_seeds,
)

W, H = 160, 120
ARRAYS = ("left", "right", "disparity_left", "disparity_right", "depth_left", "occlusion_left", "occlusion_right")


# ------------------------------------------------------------------------------------------------
# helpers (independent of the implementation)
# ------------------------------------------------------------------------------------------------


def sample_rows(image: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bilinear sampling of ``image`` (H, W[, C]) at column ``u`` (H, W) in the same row; plus validity."""
    h, w = u.shape
    valid = (u >= 0.0) & (u <= w - 1)
    uc = np.clip(u, 0.0, w - 1)
    u0 = np.minimum(np.floor(uc).astype(np.int64), w - 2)
    a = uc - u0
    rows = np.arange(h)[:, None]
    lo, hi = image[rows, u0], image[rows, u0 + 1]
    if image.ndim == 3:
        a = a[..., None]
    return (1.0 - a) * lo + a * hi, valid


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    out = mask.copy()
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            out |= np.roll(np.roll(mask, dy, axis=0), dx, axis=1)
    return out


def discontinuities(disp: np.ndarray, tol: float = 0.02) -> np.ndarray:
    """True where the disparity is not locally affine (depth edges, creases) in x or y."""
    bad = np.zeros(disp.shape, bool)
    ddx = np.abs(disp[:, 2:] - 2.0 * disp[:, 1:-1] + disp[:, :-2]) > tol
    ddy = np.abs(disp[2:, :] - 2.0 * disp[1:-1, :] + disp[:-2, :]) > tol
    bad[:, 1:-1] |= ddx
    bad[1:-1, :] |= ddy
    return bad


def clean_mask(s: StereoSample, radius: int = 2) -> np.ndarray:
    """Left pixels visible in the right view, away from borders, depth discontinuities and occlusions."""
    mask = ~dilate(discontinuities(s.disparity_left) | s.occlusion_left, radius)
    mask[:radius + 1, :] = mask[-radius - 1:, :] = False
    mask[:, :radius + 1] = mask[:, -radius - 1:] = False
    return mask


def warp_error(s: StereoSample) -> float:
    """Mean abs difference between the left image and the right image warped by the GT disparity."""
    u = np.arange(s.width, dtype=np.float64)[None, :] - s.disparity_left
    warped, valid = sample_rows(s.right.astype(np.float64), u)
    mask = clean_mask(s) & valid
    assert mask.mean() > 0.3, "too few clean pixels to check the ground truth"
    return float(np.abs(warped - s.left)[mask].mean())


def reprojection_agreement(a: StereoSample, b: StereoSample) -> float:
    """Fraction of ``a``'s left pixels that, moved into ``b``'s left camera with the poses
    (``T_world_left``), land inside ``b`` where ``b`` sees the same depth. Compared as disparity,
    which is affine across a plane, so bilinear interpolation is exact away from edges."""
    v, u = np.mgrid[0:a.height, 0:a.width].astype(np.float64)
    z = a.depth_left.astype(np.float64)
    pts = np.stack([(u - a.cx) / a.focal * z, (v - a.cy) / a.focal * z, z, np.ones_like(z)], axis=-1)
    in_b = pts @ (np.linalg.inv(b.pose) @ a.pose).T
    zb = in_b[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        ub = b.focal * in_b[..., 0] / zb + b.cx
        vb = b.focal * in_b[..., 1] / zb + b.cy
    inside = (zb > 0) & (ub >= 0) & (ub <= b.width - 1) & (vb >= 0) & (vb <= b.height - 1)
    assert inside.mean() > 0.3
    u0 = np.clip(np.floor(np.where(inside, ub, 0)), 0, b.width - 2).astype(np.int64)
    v0 = np.clip(np.floor(np.where(inside, vb, 0)), 0, b.height - 2).astype(np.int64)
    fu, fv = np.where(inside, ub, 0) - u0, np.where(inside, vb, 0) - v0
    d = b.disparity_left.astype(np.float64)
    seen = ((1 - fv) * ((1 - fu) * d[v0, u0] + fu * d[v0, u0 + 1])
            + fv * ((1 - fu) * d[v0 + 1, u0] + fu * d[v0 + 1, u0 + 1]))
    expected = b.focal * b.baseline / np.where(inside, zb, 1.0)
    return float((np.abs(seen - expected) < 1e-3 * expected)[inside].mean())


def saturation(img: np.ndarray) -> float:
    return float((img.max(axis=2) - img.min(axis=2)).mean())


# ------------------------------------------------------------------------------------------------
# determinism, shapes, camera
# ------------------------------------------------------------------------------------------------


def test_same_seed_gives_bit_identical_sample() -> None:
    a = generate_sample(11, W, H)
    b = generate_sample(11, W, H)
    for name in ARRAYS:
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and np.array_equal(x, y), name
    assert (a.focal, a.cx, a.cy, a.baseline) == (b.focal, b.cx, b.cy, b.baseline)


def test_different_seeds_differ() -> None:
    a = generate_sample(11, W, H)
    b = generate_sample(12, W, H)
    assert not np.array_equal(a.left, b.left)
    assert not np.array_equal(a.disparity_left, b.disparity_left)


@pytest.mark.parametrize("domain", sorted(DOMAINS))
def test_shapes_dtypes_and_intrinsics(domain: str) -> None:
    s = generate_sample(3, W, H, domain=domain)
    for name in ("left", "right"):
        img = getattr(s, name)
        assert img.shape == (H, W, 3) and img.dtype == np.float32
        assert img.min() >= 0.0 and img.max() <= 1.0
    for name in ("disparity_left", "disparity_right", "depth_left"):
        assert getattr(s, name).shape == (H, W) and getattr(s, name).dtype == np.float32
    for name in ("occlusion_left", "occlusion_right"):
        assert getattr(s, name).shape == (H, W) and getattr(s, name).dtype == bool
    assert (s.width, s.height) == (W, H) and s.pose is None and s.domain == domain
    cfg = get_domain(domain)
    assert s.focal == pytest.approx(cfg.focal_factor * W) and s.baseline == pytest.approx(cfg.baseline)
    K = s.K()
    assert K.shape == (3, 3)
    np.testing.assert_allclose(K, [[s.focal, 0, s.cx], [0, s.focal, s.cy], [0, 0, 1]])
    assert 0.4 * W < s.cx < 0.6 * W and 0.4 * H < s.cy < 0.6 * H


# ------------------------------------------------------------------------------------------------
# ground truth
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("domain", sorted(DOMAINS))
@pytest.mark.parametrize("bounds", [(None, None), (3.0, 30.0)])
def test_disparity_in_range_and_depth_consistent(domain: str, bounds: tuple[float | None, float | None]) -> None:
    s = generate_sample(5, W, H, domain=domain, min_disparity=bounds[0], max_disparity=bounds[1])
    cfg = get_domain(domain)
    lo = bounds[0] if bounds[0] is not None else cfg.min_disparity * W / 640
    hi = bounds[1] if bounds[1] is not None else cfg.max_disparity * W / 640
    for d in (s.disparity_left, s.disparity_right):
        assert np.all(np.isfinite(d))
        assert d.min() >= lo and d.max() <= hi
        assert d.max() - d.min() > 0.2 * (hi - lo), "the scene should use a good part of the range"
    np.testing.assert_allclose(s.depth_left, s.focal * s.baseline / s.disparity_left, rtol=1e-5)
    np.testing.assert_allclose(s.depth_right, s.focal * s.baseline / s.disparity_right, rtol=1e-5)


def test_disparity_is_piecewise_affine_with_slanted_planes() -> None:
    s = generate_sample(2, W, H)
    d = s.disparity_left.astype(np.float64)
    affine = ~discontinuities(d, tol=1e-3)
    assert affine.mean() > 0.8
    gx = np.abs(np.diff(d, axis=1))
    assert (gx > 1e-4).mean() > 0.5, "surfaces are slanted: disparity varies across them"


@pytest.mark.parametrize("domain", sorted(DOMAINS))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_right_image_warped_by_gt_disparity_matches_left(domain: str, seed: int) -> None:
    clean = generate_sample(seed, W, H, domain=domain, photometric=False)
    err_clean = warp_error(clean)
    assert err_clean < 0.005
    real = generate_sample(seed, W, H, domain=domain)
    # Same scene, same GT: only the photometric model differs.
    np.testing.assert_array_equal(real.disparity_left, clean.disparity_left)
    err_real = warp_error(real)
    assert err_real > 3.0 * err_clean and err_real > 0.005


def test_wrong_disparity_breaks_the_warp_check() -> None:
    """The warp check has teeth: a one-pixel disparity error is clearly visible."""
    s = generate_sample(0, W, H, photometric=False)
    shifted = dataclasses.replace(s, disparity_left=s.disparity_left + 1.0)
    assert warp_error(shifted) > 2.0 * warp_error(s)


@pytest.mark.parametrize("domain", sorted(DOMAINS))
def test_right_disparity_consistent_with_left(domain: str) -> None:
    s = generate_sample(4, W, H, domain=domain, photometric=False)
    u = np.arange(W, dtype=np.float64)[None, :] - s.disparity_left
    d_r, valid = sample_rows(s.disparity_right.astype(np.float64), u)
    visible = valid & ~s.occlusion_left
    # Bilinear interpolation of an affine function is exact unless the two taps straddle an edge.
    close = np.abs(d_r - s.disparity_left) < 1e-2
    assert close[visible].mean() > 0.9  # the rest: the two taps straddle an edge
    assert close[clean_mask(s) & valid].mean() > 0.999
    # And the other way round.
    u = np.arange(W, dtype=np.float64)[None, :] + s.disparity_right
    d_l, valid = sample_rows(s.disparity_left.astype(np.float64), u)
    visible = valid & ~s.occlusion_right
    assert (np.abs(d_l - s.disparity_right) < 1e-2)[visible].mean() > 0.9


@pytest.mark.parametrize("domain", sorted(DOMAINS))
@pytest.mark.parametrize("seed", [0, 7])
def test_occlusion_masks_are_plausible(domain: str, seed: int) -> None:
    s = generate_sample(seed, W, H, domain=domain, photometric=False)
    cols = np.arange(W, dtype=np.float64)[None, :]
    for occ, disp, other, sign in ((s.occlusion_left, s.disparity_left, s.disparity_right, -1.0),
                                   (s.occlusion_right, s.disparity_right, s.disparity_left, 1.0)):
        assert 0.0 < occ.mean() < 0.3
        target = cols + sign * disp
        outside = (target < 0) | (target > W - 1)
        assert np.all(occ[outside]), "points projecting outside the other image are occluded"
        hidden = occ & ~outside
        assert hidden.any(), "objects occlude the background somewhere"
        # A hidden point is covered by a nearer surface in the other view: there, at one of the two
        # pixels around the projection, the other view's disparity is larger. A visible point is not
        # covered: at least one of the two pixels shows (about) its own disparity.
        rows = np.arange(H)[:, None]
        taps = [other[rows, np.clip(fn(target), 0, W - 1).astype(np.int64)] for fn in (np.floor, np.ceil)]
        covered_any = np.maximum(*taps) > disp + 0.05
        covered_all = np.minimum(*taps) > disp + 0.05
        assert covered_any[hidden].mean() > 0.97
        assert covered_all[~occ].mean() < 0.002
        # Occlusions sit next to a depth discontinuity (or the image border, the occluder may be
        # outside the image), at most the largest disparity away towards the occluder.
        edges = np.pad(dilate(discontinuities(disp, tol=0.05), 1), ((0, 0), (W, W)), constant_values=True)
        reach = int(np.ceil(max(disp.max(), other.max()))) + 1
        near_edge = np.zeros(disp.shape, bool)
        for k in range(reach + 1):
            near_edge |= edges[:, W - int(sign) * k:2 * W - int(sign) * k]  # edge k pixels towards the occluder
        assert near_edge[hidden].mean() > 0.99


# ------------------------------------------------------------------------------------------------
# sequences
# ------------------------------------------------------------------------------------------------


def test_sequence_moves_smoothly_with_valid_ground_truth() -> None:
    n, speed = 6, 0.2
    frames = list(generate_sequence(9, n, W, H, domain="outdoor", speed=speed, photometric=False))
    assert len(frames) == n
    poses = np.stack([f.pose for f in frames])
    np.testing.assert_allclose(poses[0], np.eye(4), atol=1e-12)
    for p in poses:
        np.testing.assert_allclose(p[:3, :3] @ p[:3, :3].T, np.eye(3), atol=1e-9)
        np.testing.assert_allclose(p[3], [0, 0, 0, 1])
    steps = np.linalg.norm(np.diff(poses[:, :3, 3], axis=0), axis=1)
    assert np.all(steps > 0.5 * speed) and np.all(steps < 2.0 * speed)
    assert np.all(np.abs(np.diff(steps)) < 0.2 * speed), "no jerks in the translation"
    rot_steps = [np.degrees(np.arccos(np.clip((np.trace(a[:3, :3].T @ b[:3, :3]) - 1) / 2, -1, 1)))
                 for a, b in zip(poses[:-1], poses[1:])]
    assert max(rot_steps) < 1.0
    assert poses[-1, 2, 3] > poses[0, 2, 3], "the rig drives forward"
    cfg = get_domain("outdoor")
    lo, hi = cfg.min_disparity * W / 640, cfg.max_disparity * W / 640
    for f in frames:
        assert f.disparity_left.min() >= lo and f.disparity_left.max() <= hi
        assert np.all(np.isfinite(f.depth_left))
    for a, b in zip(frames[:-1], frames[1:]):
        assert not np.array_equal(a.left, b.left)
        assert not np.array_equal(a.disparity_left, b.disparity_left)
    for f in frames:
        assert warp_error(f) < 0.005
    # One static scene and poses that are T_world_left: frame 0's points, moved into the last
    # frame's camera with the poses, land where the last frame sees the same depth.
    assert reprojection_agreement(frames[0], frames[-1]) > 0.7
    assert reprojection_agreement(frames[-1], frames[0]) > 0.7
    fake = dataclasses.replace(frames[-1], pose=np.linalg.inv(frames[-1].pose))  # the other convention
    assert reprojection_agreement(frames[0], fake) < 0.5


def test_sequence_is_deterministic_and_noise_is_fresh() -> None:
    a = list(generate_sequence(4, 3, W, H))
    b = list(generate_sequence(4, 3, W, H))
    for fa, fb in zip(a, b):
        for name in ARRAYS:
            assert np.array_equal(getattr(fa, name), getattr(fb, name)), name
        np.testing.assert_array_equal(fa.pose, fb.pose)
    static = list(generate_sequence(4, 2, W, H, speed=0.0))
    np.testing.assert_array_equal(static[0].disparity_left, static[1].disparity_left)
    diff = static[1].left - static[0].left
    assert np.abs(diff).mean() > 1e-3, "fresh noise per frame"
    assert abs(float(diff.mean())) < 2e-3, "same gain and gamma throughout the sequence"


def test_long_fast_sequence_keeps_the_scene_in_front() -> None:
    """Travel far beyond the scene depth: the rig ping-pongs and the GT stays valid."""
    frames = generate_sequence(1, 40, 64, 48, domain="indoor", speed=2.0, photometric=False)
    cfg = get_domain("indoor")
    lo, hi = cfg.min_disparity * 64 / 640, cfg.max_disparity * 64 / 640
    for f in frames:
        assert np.all(np.isfinite(f.disparity_left))
        assert f.disparity_left.min() >= lo and f.disparity_left.max() <= hi
        assert f.disparity_right.min() >= lo and f.disparity_right.max() <= hi


# ------------------------------------------------------------------------------------------------
# domains
# ------------------------------------------------------------------------------------------------


def test_domains_registry() -> None:
    assert {"indoor", "outdoor"} <= set(DOMAINS)
    for name, cfg in DOMAINS.items():
        assert isinstance(cfg, DomainConfig) and cfg.name == name and get_domain(name) is cfg
        assert sum(cfg.texture_probabilities.values()) == pytest.approx(1.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        DOMAINS["indoor"].baseline = 1.0  # type: ignore[misc]


def test_unknown_domain_lists_known_names() -> None:
    with pytest.raises(ValueError, match="indoor"):
        get_domain("underwater")
    with pytest.raises(ValueError, match="underwater"):
        generate_sample(0, W, H, domain="underwater")


def test_domains_look_different() -> None:
    seeds = range(4)
    indoor = [generate_sample(s, W, H, domain="indoor") for s in seeds]
    outdoor = [generate_sample(s, W, H, domain="outdoor") for s in seeds]
    sat_in = np.mean([saturation(x.left) for x in indoor])
    sat_out = np.mean([saturation(x.left) for x in outdoor])
    assert sat_out > 1.5 * sat_in, (sat_in, sat_out)
    # Stronger photometric mismatch between the views in the unseen domain.
    mismatch_in = np.mean([abs(float(x.left.mean() - x.right.mean())) for x in indoor])
    mismatch_out = np.mean([abs(float(x.left.mean() - x.right.mean())) for x in outdoor])
    assert mismatch_out > mismatch_in
    # Smaller disparities (farther range) by default in the unseen domain.
    assert np.mean([np.median(x.disparity_left) for x in outdoor]) < np.mean(
        [np.median(x.disparity_left) for x in indoor])


def test_domain_config_validates() -> None:
    with pytest.raises(ValueError, match="min_disparity"):
        dataclasses.replace(get_domain("indoor"), min_disparity=10.0, max_disparity=5.0)
    with pytest.raises(ValueError, match="texture"):
        dataclasses.replace(get_domain("indoor"), texture_weights=(("plaid", 1.0),))


# ------------------------------------------------------------------------------------------------
# arguments, splits
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, match", [
    (dict(width=31), "width"),
    (dict(height=8), "height"),
    (dict(width=64.0), "width"),
    (dict(min_disparity=10.0, max_disparity=5.0), "min_disparity"),
    (dict(min_disparity=0.0, max_disparity=5.0), "min_disparity"),
    (dict(min_disparity=1.0, max_disparity=float(W)), "max_disparity"),
    (dict(seed=-1), "seed"),
])
def test_bad_sample_arguments(kwargs: dict, match: str) -> None:
    args = dict(seed=0, width=W, height=H)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        generate_sample(**args)


@pytest.mark.parametrize("kwargs, match", [
    (dict(num_frames=0), "num_frames"),
    (dict(speed=-0.1), "speed"),
    (dict(width=16), "width"),
    (dict(domain="mars"), "mars"),
])
def test_bad_sequence_arguments_fail_eagerly(kwargs: dict, match: str) -> None:
    args = dict(seed=0, num_frames=2, width=W, height=H)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        generate_sequence(**args)  # no iteration needed


def test_minimum_size_and_odd_sizes_work() -> None:
    s = generate_sample(0, 32, 32)
    assert s.left.shape == (32, 32, 3)
    s = generate_sample(0, 101, 37, domain="outdoor")
    assert s.disparity_left.shape == (37, 101) and np.all(s.disparity_left > 0)


def test_split_seeds_are_disjoint_and_deterministic() -> None:
    splits = {name: split_seeds(name, 500) for name in ("train", "val", "test")}
    assert all(len(v) == 500 and len(set(v)) == 500 for v in splits.values())
    assert not set(splits["train"]) & set(splits["val"])
    assert not set(splits["train"]) & set(splits["test"])
    assert not set(splits["val"]) & set(splits["test"])
    assert split_seeds("val", 500) == splits["val"]
    assert split_seeds("val", 10) == splits["val"][:10]
    with pytest.raises(ValueError, match="train"):
        split_seeds("holdout", 3)
    with pytest.raises(ValueError, match="count"):
        split_seeds("train", -1)


@pytest.mark.parametrize("bounds", [(10.0, 10.5), (0.2, 1.0), (40.0, 150.0)])
def test_narrow_and_unusual_disparity_ranges(bounds: tuple[float, float]) -> None:
    s = generate_sample(6, W, H, min_disparity=bounds[0], max_disparity=bounds[1], photometric=False)
    for d in (s.disparity_left, s.disparity_right):
        assert d.min() >= bounds[0] and d.max() <= bounds[1]
    assert warp_error(s) < 0.005
