"""Dataset readers on tiny files written here: PFM with inf, KITTI uint16, Middlebury calib, layout detection."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from stereo_depth_ros.core import datasets as ds

REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata"


def write_pfm(path: Path, array: np.ndarray, little_endian: bool = True) -> None:
    """A single-channel PFM, rows bottom to top, as Middlebury writes it."""
    height, width = array.shape
    data = np.ascontiguousarray(array[::-1], dtype="<f4" if little_endian else ">f4")
    path.write_bytes(b"Pf\n" + f"{width} {height}\n{-1.0 if little_endian else 1.0}\n".encode() + data.tobytes())


def write_middlebury(root: Path, disparity: np.ndarray, doffs: float = 0.0, ndisp: int | None = 32,
                     mask: np.ndarray | None = None) -> Path:
    root.mkdir(parents=True)
    height, width = disparity.shape
    rng = np.random.default_rng(0)
    for name in ("im0.png", "im1.png"):
        cv2.imwrite(str(root / name), rng.integers(0, 255, (height, width, 3), dtype=np.uint8))
    write_pfm(root / "disp0GT.pfm", disparity)
    lines = [f"cam0=[500.5 0 {width / 2}; 0 500.5 {height / 2}; 0 0 1]",
             f"cam1=[500.5 0 {width / 2 + doffs}; 0 500.5 {height / 2}; 0 0 1]",
             f"doffs={doffs}", "baseline=120.0", f"width={width}", f"height={height}"]
    if ndisp is not None:
        lines.append(f"ndisp={ndisp}")
    (root / "calib.txt").write_text("\n".join(lines) + "\n")
    if mask is not None:
        cv2.imwrite(str(root / "mask0nocc.png"), mask)
    return root


def test_pfm_rows_run_bottom_up_and_inf_means_unknown(tmp_path):
    gt = np.array([[1.0, 2.0, np.inf], [4.0, 5.0, 6.0]], dtype=np.float32)
    for little in (True, False):
        path = tmp_path / f"d_{little}.pfm"
        write_pfm(path, gt, little)
        raw = ds.read_pfm(path)
        assert raw[0, 0] == 1.0 and raw[1, 2] == 6.0 and math.isinf(raw[0, 2])
        disparity = ds.read_disparity(path)
        assert np.isnan(disparity[0, 2]) and disparity[1, 0] == 4.0


def test_pfm_with_bad_header_or_short_data_is_named(tmp_path):
    bad = tmp_path / "bad.pfm"
    bad.write_bytes(b"P6\n2 2\n-1\n")
    with pytest.raises(ValueError, match="expected a PFM file"):
        ds.read_pfm(bad)
    short = tmp_path / "short.pfm"
    short.write_bytes(b"Pf\n4 4\n-1.0\n" + np.zeros(3, "<f4").tobytes())
    with pytest.raises(ValueError, match="expected 16 floats, got 3"):
        ds.read_pfm(short)


def test_kitti_uint16_png_is_disparity_times_256_with_zero_unknown(tmp_path):
    raw = np.array([[0, 256], [512 + 128, 65535]], dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "d.png"), raw)
    disparity = ds.read_disparity(tmp_path / "d.png")
    assert np.isnan(disparity[0, 0]) and disparity[0, 1] == 1.0 and disparity[1, 0] == 2.5
    assert disparity[1, 1] == pytest.approx(65535 / 256)


def test_middlebury_calib_parsing(tmp_path):
    path = tmp_path / "calib.txt"
    path.write_text("cam0=[1870.5 0 347.25; 0 1870.5 277; 0 0 1]\ncam1=[1870.5 0 360; 0 1870.5 277; 0 0 1]\n"
                    "doffs=12.75\nbaseline=160.0\nwidth=695\nheight=555\nndisp=144\nisint=0\nvmin=38\nvmax=113\n")
    calib = ds.read_middlebury_calib(path)
    assert calib["cam0"][0, 0] == 1870.5 and calib["cam0"][0, 2] == 347.25 and calib["cam1"][0, 2] == 360
    assert calib["doffs"] == 12.75 and calib["baseline"] == 160.0 and calib["ndisp"] == 144
    path.write_text("cam0=[1 0 0; 0 1 0]\ncam1=[1 0 0; 0 1 0; 0 0 1]\nbaseline=1\n")
    with pytest.raises(ValueError, match="3x3 matrix for cam0"):
        ds.read_middlebury_calib(path)
    path.write_text("cam0=[1 0 0; 0 1 0; 0 0 1]\ncam1=[1 0 0; 0 1 0; 0 0 1]\n")
    with pytest.raises(ValueError, match="baseline= line"):
        ds.read_middlebury_calib(path)


def test_middlebury_scene_reader(tmp_path):
    gt = np.full((6, 8), 5.0, np.float32)
    gt[0, 0] = np.inf
    mask = np.full((6, 8), 255, np.uint8)
    mask[2, 3] = 128
    sample = ds.load_middlebury_scene(write_middlebury(tmp_path / "Scene", gt, doffs=4.0, ndisp=40, mask=mask))
    assert sample.name == "Scene" and sample.left.shape == (6, 8, 3) and sample.left.dtype == np.float32
    assert np.isnan(sample.disparity[0, 0]) and sample.disparity[1, 1] == 5.0
    assert sample.focal == 500.5 and sample.baseline == pytest.approx(0.12)
    assert sample.doffs == -4.0 and sample.max_disparity == 40.0  # cx_left - cx_right; ndisp
    assert sample.occlusion[2, 3] and sample.occlusion.sum() == 1
    # Without ndisp the range comes from the ground truth.
    assert ds.load_middlebury_scene(write_middlebury(tmp_path / "NoNdisp", gt, ndisp=None)).max_disparity == 6.0


def write_kitti(root: Path, year: int, frames: int = 2) -> Path:
    left, right, occ, noc, calib = ds._KITTI_DIRS[0 if year == 2012 else 1]
    for d in (left, right, occ, noc, calib):
        (root / d).mkdir(parents=True)
    rng = np.random.default_rng(1)
    for i in range(frames):
        stem = f"{i:06d}_10"
        for d in (left, right):
            cv2.imwrite(str(root / d / f"{stem}.png"), rng.integers(0, 255, (5, 7, 3), dtype=np.uint8))
            cv2.imwrite(str(root / d / f"{i:06d}_11.png"), rng.integers(0, 255, (5, 7, 3), dtype=np.uint8))
        disparity = np.full((5, 7), 3 * 256, np.uint16)
        disparity[0, 0] = 0
        cv2.imwrite(str(root / occ / f"{stem}.png"), disparity)
        disparity[4, 6] = 0  # known in disp_occ only: occluded
        cv2.imwrite(str(root / noc / f"{stem}.png"), disparity)
        keys = ("P_rect_02", "P_rect_03") if year == 2015 else ("P2", "P3")
        (root / calib / f"{i:06d}.txt").write_text(
            f"{keys[0]}: 721.5 0 609.5 44.85 0 721.5 172.8 0.2 0 0 1 0.003\n"
            f"{keys[1]}: 721.5 0 609.5 -339.5 0 721.5 172.8 2.2 0 0 1 0.003\n")
    return root


@pytest.mark.parametrize("year", [2012, 2015])
def test_kitti_reader_pairs_frames_with_ground_truth(tmp_path, year):
    root = write_kitti(tmp_path / f"kitti{year}", year)
    assert ds.detect_layout(root) == "kitti"
    samples = list(ds.load_kitti_samples(root))
    assert [s.name for s in samples] == ["000000_10", "000001_10"]  # the _11 frames have no GT
    s = samples[0]
    assert np.isnan(s.disparity[0, 0]) and s.disparity[2, 2] == 3.0
    assert s.occlusion[4, 6] and s.occlusion.sum() == 1
    assert s.focal == 721.5 and s.baseline == pytest.approx((44.85 + 339.5) / 721.5)
    assert s.max_disparity == math.ceil(3 * 1.05)


def test_layout_detection_and_folders_of_scenes(tmp_path):
    gt = np.full((4, 6), 2.0, np.float32)
    write_middlebury(tmp_path / "scenes" / "B", gt)
    write_middlebury(tmp_path / "scenes" / "A", gt)
    (tmp_path / "scenes" / "notes").mkdir()
    assert ds.detect_layout(tmp_path / "scenes" / "A") == "middlebury"
    assert ds.detect_layout(tmp_path / "scenes") == "scenes"
    assert [s.name for s in ds.load_scenes([tmp_path / "scenes"])] == ["A", "B"]
    assert [s.name for s in ds.load_scenes([tmp_path / "scenes", tmp_path / "scenes" / "A"], num_samples=2)] == ["A", "B"]
    with pytest.raises(ValueError, match="expected a Middlebury scene"):
        ds.detect_layout(tmp_path / "scenes" / "notes")
    with pytest.raises(ValueError, match="no such folder"):
        list(ds.load_scenes([tmp_path / "missing"]))
    (tmp_path / "scenes" / "A" / "calib.txt").unlink()
    with pytest.raises(ValueError, match="calib.txt"):  # checked before any sample is read
        ds.load_scenes([tmp_path / "scenes"])


def test_builtin_motorcycle_is_the_real_middlebury_pair():
    pytest.importorskip("skimage")
    sample = next(iter(ds.load_scenes(["motorcycle"])))
    assert sample.name == "motorcycle" and sample.left.shape == (500, 741, 3)
    valid = np.isfinite(sample.disparity)
    assert 0.85 < valid.mean() < 0.99 and 5 < np.nanmin(sample.disparity) < np.nanmax(sample.disparity) < 62
    assert sample.focal == pytest.approx(994.978) and sample.doffs == pytest.approx(-31.086)


@pytest.mark.skipif(not (REALDATA / "middlebury").is_dir(), reason="../shared/realdata is not here")
def test_the_development_scenes_read_as_documented():
    samples = {s.name: s for s in ds.load_scenes([REALDATA / "middlebury"])}
    assert sorted(samples) == ["Art", "Books", "Cones", "Reindeer", "Teddy", "Tsukuba", "Venus"]
    art = samples["Art"]
    assert art.left.shape == (555, 695, 3) and art.max_disparity == 144
    assert 37 < np.nanmin(art.disparity) and np.nanmax(art.disparity) < 114
    assert 0.2 < art.occlusion.mean() < 0.3


def write_sequence(root: Path, frames: int = 4, with_gt: tuple[int, ...] = (0, 2)) -> np.ndarray:
    """A recorded sequence (``left_NNN.png``, ``right_NNN.png``, ``calib.json``, ``gt/``) whose left
    images are a ramp shifted by each frame's number; the ground truth is KITTI uint16 / 256."""
    root.mkdir(parents=True)
    p_right = [[700.0, 0.0, 1.0, 0.0], [0.0, 700.0, 2.0, 0.0], [0.0, 0.0, 1.0, 0.0]]
    calib = {"fx": 700.0, "cx": 3.0, "cy": 2.0, "baseline_m": 0.5, "P_right": p_right}
    (root / "calib.json").write_text(json.dumps(calib))
    (root / "gt").mkdir()
    sparse = np.zeros((4, 6), np.uint16)
    sparse[1, 2], sparse[3, 4] = int(7.25 * 256), int(12.5 * 256)
    for i in range(frames):
        ramp = np.uint8(np.arange(24).reshape(4, 6) * 5 + 10 * i)
        cv2.imwrite(str(root / f"left_{i:03d}.png"), ramp)
        cv2.imwrite(str(root / f"right_{i:03d}.png"), 255 - ramp)
        if i in with_gt:
            cv2.imwrite(str(root / "gt" / f"disp_lidar_{i:03d}.png"), sparse)
    return sparse


def test_a_recorded_sequence_reads_its_ground_truth_frames_only(tmp_path):
    sparse = write_sequence(tmp_path / "drive")
    assert ds.detect_layout(tmp_path / "drive") == "sequence"
    assert ds.detect_layout(tmp_path) == "scenes"
    samples = list(ds.load_scenes([tmp_path]))
    assert [s.name for s in samples] == ["drive/000", "drive/002"]  # frames 1 and 3 have no ground truth
    s = samples[1]
    assert s.left[0, 0, 0] == pytest.approx(20 / 255) and s.right[0, 0, 0] == pytest.approx(235 / 255)  # frame 2's pair
    known = np.isfinite(s.disparity)
    assert known.sum() == 2 and s.disparity[1, 2] == 7.25 and s.disparity[3, 4] == 12.5
    assert np.array_equal(known, sparse > 0)
    assert (s.focal, s.baseline, s.doffs, s.cx, s.cy) == (700.0, 0.5, 2.0, 3.0, 2.0)
    assert s.max_disparity == math.ceil(12.5 * 1.05)
    assert [s.name for s in ds.load_scenes([tmp_path / "drive"], num_samples=1)] == ["drive/000"]


def test_a_broken_recorded_sequence_is_named_before_any_frame_is_read(tmp_path):
    write_sequence(tmp_path / "drive")
    (tmp_path / "drive" / "right_002.png").unlink()
    with pytest.raises(ValueError, match="right_002"):
        ds.load_sequence_samples(tmp_path / "drive")
    (tmp_path / "drive" / "right_001.png").unlink()  # frame 1 has no ground truth: not needed
    cv2.imwrite(str(tmp_path / "drive" / "right_002.png"), np.zeros((4, 6), np.uint8))
    assert len(list(ds.load_sequence_samples(tmp_path / "drive"))) == 2
    cv2.imwrite(str(tmp_path / "drive" / "gt" / "disp_lidar_009.png"), np.zeros((4, 6), np.uint16))
    with pytest.raises(ValueError, match="disp_lidar_009.png"):
        ds.load_sequence_samples(tmp_path / "drive")
    (tmp_path / "drive" / "gt" / "disp_lidar_009.png").unlink()
    (tmp_path / "drive" / "calib.json").write_text('{"fx": 700.0, "cx": 3.0}')
    with pytest.raises(ValueError, match="calib.json.*baseline_m"):
        ds.load_sequence_samples(tmp_path / "drive")
    (tmp_path / "drive" / "calib.json").write_text('{"fx": 700.0, "cx": 3.0, "cy": 2.0, "baseline_m": -0.5}')
    with pytest.raises(ValueError, match="baseline_m > 0"):
        ds.read_sequence_calibration(tmp_path / "drive")
    for f in (tmp_path / "drive" / "gt").iterdir():
        f.unlink()
    (tmp_path / "drive" / "gt").rmdir()
    with pytest.raises(ValueError, match="expected a Middlebury scene"):  # without gt/ it is no dataset
        ds.detect_layout(tmp_path / "drive")


@pytest.mark.skipif(not (REALDATA / "unlabeled" / "sequences").is_dir(), reason="../shared/realdata is not here")
def test_the_kitti_raw_drive_gives_its_five_lidar_frames():
    samples = list(ds.load_scenes([REALDATA / "unlabeled" / "sequences"]))
    assert [s.name for s in samples] == [f"kitti_raw_20110926_130432_gray/{i:03d}" for i in range(5)]
    s = samples[0]
    assert s.left.shape == (375, 1242, 3) and s.focal == pytest.approx(721.5377)
    assert 0.03 < np.isfinite(s.disparity).mean() < 0.06 and 5 < np.nanmin(s.disparity) < np.nanmax(s.disparity) < 90
