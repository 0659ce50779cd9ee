"""Tests of the FlyingThings-like objects generator (core/scenes/objects.py): exact disparity and
occlusion on an analytic scene (a box before a far plane, every edge derived by hand), photometric
consistency of the two views, the generated scenes' disparity range and spread, determinism, the
photo folder (development scenes excluded) and the dispatch by domain."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pytest

from stereo_depth_ros.core.scenes import OBJECT_DOMAINS, generate_sample, generate_sequence, get_domain
from stereo_depth_ros.core.scenes.objects import (Gloss, Lighting, ObjectScene, generate_objects_sample, make_object,
                                                  render_object_scene)
from stereo_depth_ros.core.scenes.photometry import PhotometricParams
from stereo_depth_ros.core.scenes.sample import Camera
from stereo_depth_ros.core.scenes.textures import load_photo_folder, texture_from_image

W, H = 160, 120
# f * B = 20 px m: the far plane (10 m) is at 2 px, the box's front face (4 m) at 5 px: whole pixels.
CAM = Camera(width=W, height=H, focal=100.0, cx=(W - 1) / 2.0, cy=(H - 1) / 2.0, baseline=0.2, min_disparity=1.0,
             max_disparity=10.0)
Z_FAR, Z_BOX, BOX_DEPTH = 10.0, 4.0, 1.0
# Box corners in x and y: its front face's edges fall on half pixels (no pixel centre on an edge).
# Left view: x0 = -0.6 -> u = 79.5 + 100 * -0.6 / 4 = 64.5; x1 = 0.8 -> 99.5; y -0.4 .. 0.4 -> v 49.5 .. 69.5.
# The box spans both camera centres (x = 0 and 0.2), so neither view sees a side face.
X0, X1, Y0, Y1 = -0.6, 0.8, -0.4, 0.4
BOX_ROWS = slice(50, 70)
BOX_COLS_LEFT = slice(65, 100)  # pixel centres 65 .. 99
BOX_COLS_RIGHT = slice(60, 95)  # shifted by the box's 5 px


def smooth_tile(seed: int, size: int = 64) -> np.ndarray:
    """A periodic ``(size, size, 3)`` RGB tile of smooth random colours in [0.1, 0.9]."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0.1, 0.9, (8, 8, 3)).astype(np.float32)
    tiled = np.tile(coarse, (3, 3, 1))
    up = cv2.resize(tiled, (3 * size, 3 * size), interpolation=cv2.INTER_CUBIC)[size:2 * size, size:2 * size]
    return np.clip(up, 0.0, 1.0)


def box_mesh(x0: float, x1: float, y0: float, y1: float, z0: float, z1: float) -> tuple[np.ndarray, np.ndarray]:
    v = np.array([[x, y, z] for z in (z0, z1) for y in (y0, y1) for x in (x0, x1)], float)
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    return v, np.array([t for a, b, c, d in quads for t in ((a, b, c), (a, c, d))])


def analytic_scene(box_gloss: Gloss | None = None, light: tuple[float, float, float] = (0.2, -0.4, -1.0)
                   ) -> ObjectScene:
    far = make_object(np.array([[-60, -60, Z_FAR], [60, -60, Z_FAR], [60, 60, Z_FAR], [-60, 60, Z_FAR]], float),
                      np.array([[0, 1, 2], [0, 2, 3]]), texture_from_image(smooth_tile(1), texel=0.02), name="far")
    v, t = box_mesh(X0, X1, Y0, Y1, Z_BOX, Z_BOX + BOX_DEPTH)
    box = make_object(v, t, texture_from_image(smooth_tile(2), texel=0.01), gloss=box_gloss, name="box")
    direction = np.asarray(light) / np.linalg.norm(light)
    return ObjectScene((far, box), Lighting(tuple(direction), (1.0, 1.0, 1.0), 0.4))


def box_mask(cols: slice) -> np.ndarray:
    mask = np.zeros((H, W), bool)
    mask[BOX_ROWS, cols] = True
    return mask


@pytest.fixture(scope="module")
def clean() -> object:
    return render_object_scene(analytic_scene(), CAM, gloss=False)


# ------------------------------------------------------------------------------------------------
# exact ground truth on the analytic scene
# ------------------------------------------------------------------------------------------------


def test_disparity_is_f_b_over_z_at_every_pixel(clean) -> None:
    fb = CAM.focal * CAM.baseline
    for disparity, box in ((clean.disparity_left, box_mask(BOX_COLS_LEFT)),
                           (clean.disparity_right, box_mask(BOX_COLS_RIGHT))):
        expected = np.where(box, fb / Z_BOX, fb / Z_FAR)
        np.testing.assert_allclose(disparity, expected, rtol=1e-6, atol=0)
    np.testing.assert_allclose(clean.depth_left, np.where(box_mask(BOX_COLS_LEFT), Z_BOX, Z_FAR), rtol=1e-6)
    assert (clean.focal, clean.baseline, clean.cx, clean.cy) == (CAM.focal, CAM.baseline, CAM.cx, CAM.cy)


def test_right_pixel_at_u_minus_d_maps_back(clean) -> None:
    rows, cols = np.nonzero(~clean.occlusion_left)
    d = clean.disparity_left[rows, cols]
    target = np.rint(cols - d).astype(int)  # whole pixels in this scene
    np.testing.assert_allclose(cols - d, target, atol=1e-5)
    np.testing.assert_allclose(clean.disparity_right[rows, target], d, rtol=1e-6)


def test_occlusion_masks_at_the_box_edges(clean) -> None:
    # Left view: a background pixel u (2 px) lands on right pixel u - 2, which shows the box for
    # u - 2 in 60..94: the 3 (= 5 - 2) columns just LEFT of the box's left edge (62, 63, 64) are
    # hidden; the box's right edge hides nothing in the right view. Columns 0, 1 fall off the image.
    expected_left = np.zeros((H, W), bool)
    expected_left[BOX_ROWS, 62:65] = True
    expected_left[:, :2] = True
    np.testing.assert_array_equal(clean.occlusion_left, expected_left)
    # Right view, mirrored: the 3 columns just RIGHT of the box's right edge (95, 96, 97) see
    # background that the box hides from the left camera; columns 158, 159 map past the left image.
    expected_right = np.zeros((H, W), bool)
    expected_right[BOX_ROWS, 95:98] = True
    expected_right[:, W - 2:] = True
    np.testing.assert_array_equal(clean.occlusion_right, expected_right)


# ------------------------------------------------------------------------------------------------
# photometric consistency
# ------------------------------------------------------------------------------------------------


def warp_error(sample, mask: np.ndarray) -> np.ndarray:
    """|left - right(u - d)| at whole-pixel disparities, on ``mask``."""
    rows, cols = np.nonzero(mask)
    target = np.rint(cols - sample.disparity_left[rows, cols]).astype(int)
    return np.abs(sample.left[rows, cols] - sample.right[rows, target])


def test_the_same_surface_point_has_the_same_colour_in_both_views(clean) -> None:
    visible = ~clean.occlusion_left
    assert warp_error(clean, visible).max() < 1e-4
    assert clean.left.std() > 0.05, "textured, lit surfaces"
    # The check has teeth: one pixel off the true disparity is clearly visible.
    shifted = dataclasses.replace(clean, disparity_left=clean.disparity_left + 1.0)
    inside = visible.copy()
    inside[:, :8] = False
    assert warp_error(shifted, inside).mean() > 50 * max(warp_error(clean, inside).mean(), 1e-6)


def test_gloss_is_view_dependent_and_gain_differs_per_view(clean) -> None:
    # The light mirrors the left camera's view of the box centre (0.1, 0, 4): a highlight there, that
    # the right camera (0.2 m to the right) sees 0.2 m further right on the box (5 px).
    glossy = render_object_scene(analytic_scene(Gloss(ks=0.6, shininess=100.0), light=(0.025, 0.0, -1.0)), CAM,
                                 gloss=True)
    np.testing.assert_array_equal(glossy.disparity_left, clean.disparity_left)
    box = box_mask(BOX_COLS_LEFT) & ~glossy.occlusion_left
    background = ~box_mask(BOX_COLS_LEFT) & ~glossy.occlusion_left
    assert warp_error(glossy, background).max() < 1e-4, "the matte far plane still agrees"
    assert warp_error(glossy, box).mean() > 0.01, "highlights move with the camera"
    assert (glossy.left[box_mask(BOX_COLS_LEFT)].mean() > clean.left[box_mask(BOX_COLS_LEFT)].mean() + 0.01)
    # Per-view gain and black level (added before the camera's gain), no noise: the views differ
    # by exactly that everywhere.
    left = PhotometricParams(np.full(3, 0.9, np.float32), 1.0, 0.0, (0.0, 0.0), 0.0, 0.0, 0.0)
    right = dataclasses.replace(left, gain=np.full(3, 1.1, np.float32))
    lit = render_object_scene(analytic_scene(), CAM, photometric=(left, right), offsets=(0.0, 0.02), gloss=False,
                              noise_rng=np.random.default_rng(0))
    visible = ~lit.occlusion_left
    np.testing.assert_allclose(lit.left, 0.9 * clean.left, atol=1e-5)
    expected = np.abs(0.9 * clean.left - np.minimum(1.1 * (clean.left + 0.02), 1.0))[visible]
    np.testing.assert_allclose(warp_error(lit, visible), expected, atol=1e-4)


def test_generated_pair_warps_onto_the_left_view() -> None:
    """A generated sample: the right image re-sampled at u - d matches the left on visible pixels away
    from depth edges (bilinear sampling of the texture is the only difference); the camera model,
    highlights and noise of the photometric version make it clearly worse."""
    sample = generate_sample(3, W, H, domain="objects", photometric=False)
    real = generate_sample(3, W, H, domain="objects")
    np.testing.assert_array_equal(real.disparity_left, sample.disparity_left)
    d = sample.disparity_left.astype(np.float64)
    edges = np.zeros((H, W), bool)
    edges[:, 1:] |= np.abs(np.diff(d, axis=1)) > 0.5
    edges[:, :-1] |= np.abs(np.diff(d, axis=1)) > 0.5
    edges[1:] |= np.abs(np.diff(d, axis=0)) > 0.5
    edges[:-1] |= np.abs(np.diff(d, axis=0)) > 0.5
    bad = cv2.dilate((edges | sample.occlusion_left).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    u = np.arange(W)[None, :] - d
    good = ~bad & (u >= 0) & (u <= W - 1)
    assert good.mean() > 0.3
    rows = np.arange(H)[:, None].repeat(W, 1)

    def error(s) -> float:
        x = cv2.remap(s.right, u.astype(np.float32), rows.astype(np.float32), cv2.INTER_LINEAR)
        return float(np.abs(x - s.left)[good].mean())

    assert error(sample) < 0.01
    assert error(real) > 2.0 * error(sample)


# ------------------------------------------------------------------------------------------------
# generated scenes
# ------------------------------------------------------------------------------------------------


def test_same_seed_same_arrays_other_seed_other_scene() -> None:
    a = generate_objects_sample(5, W, H)
    b = generate_sample(5, W, H, domain="objects")
    for name in ("left", "right", "disparity_left", "disparity_right", "depth_left", "occlusion_left",
                 "occlusion_right"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and np.array_equal(x, y), name
    c = generate_objects_sample(6, W, H)
    assert not np.array_equal(a.disparity_left, c.disparity_left)
    assert a.domain == "objects" and a.pose is None
    assert a.left.shape == (H, W, 3) and a.left.dtype == np.float32 and 0.0 <= a.left.min() <= a.left.max() <= 1.0


def test_disparities_are_exact_in_range_and_spread_wide() -> None:
    cfg = get_domain("objects")
    lo, hi = cfg.min_disparity * W / 640, cfg.max_disparity * W / 640
    spreads, tops = [], []
    for seed in range(4):
        s = generate_objects_sample(seed, W, H)
        assert s.focal == pytest.approx(cfg.focal_factor * W) and s.baseline == pytest.approx(cfg.baseline)
        for d in (s.disparity_left, s.disparity_right):
            assert np.all(np.isfinite(d)) and d.min() >= lo and d.max() <= hi
        np.testing.assert_allclose(s.depth_left, s.focal * s.baseline / s.disparity_left, rtol=1e-6)
        spreads.append(s.disparity_left.max() / s.disparity_left.min())
        tops.append(s.disparity_left.max())
        # Many objects: several depth jumps along an average row.
        assert (np.abs(np.diff(s.disparity_left, axis=1)) > 1.0).sum(axis=1).mean() >= 2.0
    assert min(spreads) > 4.0 and np.median(spreads) > 10.0, spreads
    assert max(tops) > 0.5 * hi, tops
    s = generate_objects_sample(0, W, H, min_disparity=4.0, max_disparity=40.0)
    assert 4.0 <= s.disparity_left.min() and s.disparity_left.max() <= 40.0
    assert s.disparity_left.max() - s.disparity_left.min() > 10.0


def test_occlusions_sit_left_of_nearer_surfaces() -> None:
    s = generate_objects_sample(2, W, H, photometric=False)
    cols = np.arange(W)[None, :]
    occluded = s.occlusion_left & (cols - s.disparity_left >= 1)  # hidden, not out of view
    assert 0.01 < occluded.mean() < 0.5
    rows, c = np.nonzero(occluded)
    d = s.disparity_left[rows, c]
    # What hides a left pixel from the right camera is nearer: within its disparity to the right
    # in the left image, and at its projection in the right image (one of the two nearest pixels).
    target = c - d
    taps = np.stack([s.disparity_right[rows, np.floor(target).astype(int)],
                     s.disparity_right[rows, np.minimum(np.ceil(target).astype(int), W - 1)]])
    assert (taps.max(axis=0) > d + 0.05).mean() > 0.97
    visible = ~s.occlusion_left
    rows, c = np.nonzero(visible)
    d = s.disparity_left[rows, c]
    target = c - d
    taps = np.stack([s.disparity_right[rows, np.floor(target).astype(int)],
                     s.disparity_right[rows, np.minimum(np.ceil(target).astype(int), W - 1)]])
    assert (taps.min(axis=0) > d + 0.05).mean() < 0.005, "a visible point is not covered in the other view"


# ------------------------------------------------------------------------------------------------
# photographs, arguments, dispatch
# ------------------------------------------------------------------------------------------------


def test_photo_folder_reads_left_images_and_never_the_development_scenes(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for name in ("street_left.png", "street_right.png", "trainingQ_Art_left.png", "testQ_Cones_left.png",
                 "Motorcycle_left.png", "sub/hall_left.jpg", "Tsukuba/x_left.png", "kitti_raw_0926/left_000.png",
                 "kitti_raw_0926/frame_left.png"):
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(path), rng.integers(0, 256, (40, 60, 3), dtype=np.uint8))
    big = np.full((900, 1200, 3), 128, np.uint8)
    assert cv2.imwrite(str(tmp_path / "sub" / "big_left.png"), big)
    photos = load_photo_folder(tmp_path)
    assert sorted(p.shape for p in photos) == sorted([(40, 60, 3), (40, 60, 3), (480, 640, 3)])
    assert all(p.dtype == np.uint8 for p in photos)
    # Textures from the folder: another pair than scikit-image's photographs alone, same geometry.
    a = generate_sample(1, 96, 64, domain="objects", photometric=False)
    b = generate_sample(1, 96, 64, domain="objects", photometric=False, photo_dir=tmp_path)
    np.testing.assert_array_equal(a.disparity_left, b.disparity_left)
    assert not np.array_equal(a.left, b.left)
    with pytest.raises(ValueError, match="photo_dir"):
        load_photo_folder(tmp_path / "missing")
    with pytest.raises(ValueError, match="photo_dir"):
        load_photo_folder(tmp_path / "Tsukuba")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="_left"):
        load_photo_folder(empty)


def test_domain_dispatch_and_bad_arguments() -> None:
    assert get_domain("objects") is OBJECT_DOMAINS["objects"] and get_domain("objects").generator == "objects"
    assert get_domain("indoor").generator == "planar"
    with pytest.raises(ValueError, match="objects"):
        get_domain("flying")
    with pytest.raises(ValueError, match="photo_dir"):
        generate_sample(0, W, H, domain="indoor", photo_dir="/tmp")
    with pytest.raises(ValueError, match="planar"):
        generate_sequence(0, 2, W, H, domain="objects")
    with pytest.raises(ValueError, match="objects generator"):
        generate_objects_sample(0, W, H, domain="indoor")
    for kwargs, match in ((dict(seed=-1), "seed"), (dict(width=16), "width"),
                          (dict(min_disparity=5.0, max_disparity=2.0), "min_disparity")):
        args = dict(seed=0, width=W, height=H)
        args.update(kwargs)
        with pytest.raises(ValueError, match=match):
            generate_objects_sample(**args)
    tex = texture_from_image(smooth_tile(0, 8), texel=0.1)
    with pytest.raises(ValueError, match="vertices"):
        make_object(np.zeros((2, 3)), np.array([[0, 1, 1]]), tex)
    with pytest.raises(ValueError, match="triangles"):
        make_object(np.zeros((3, 3)), np.array([[0, 1, 3]]), tex)
    with pytest.raises(ValueError, match="power of two"):
        texture_from_image(np.zeros((6, 6, 3)), texel=0.1)


def test_normals_are_smooth_across_gentle_folds_and_flat_across_creases() -> None:
    tex = texture_from_image(smooth_tile(0, 8), texel=0.1)
    for fold_deg, smooth in ((20.0, True), (90.0, False)):
        a = np.radians(fold_deg)
        # Two triangles sharing the edge (0, 0, 0) - (0, 1, 0), folded by fold_deg about it.
        v = np.array([[0, 0, 0], [0, 1, 0], [-1, 0, 0], [np.cos(a), 0, np.sin(a)]], float)
        obj = make_object(v, np.array([[0, 1, 2], [0, 3, 1]]), tex)
        shared = obj.corner_normals[0, 0], obj.corner_normals[1, 0]  # vertex 0 in both triangles
        faces = obj.corner_normals[0, 2], obj.corner_normals[1, 1]  # the unshared corners: their own face
        assert np.allclose(np.linalg.norm(obj.corner_normals, axis=2), 1.0)
        assert np.allclose(shared[0], shared[1]) == smooth
        if not smooth:
            assert np.allclose(shared[0], faces[0]) and np.allclose(shared[1], faces[1])
