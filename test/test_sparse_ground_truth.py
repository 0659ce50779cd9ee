"""Recorded sequences with sparse ground truth (a LiDAR scan on a few frames): into a bag, played
backwards, and scored by the replay on exactly the ground-truth pixels."""

import json
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np
import pytest

from stereo_depth_ros.bags import image_array, parse_timestamp, read_stereo_bag, reverse_sequence
from stereo_depth_ros.core.metrics import evaluate_disparity
from stereo_depth_ros.core.sgbm import SgbmBackend
from stereo_depth_ros.core.synthetic import generate_sequence
from stereo_depth_ros.tools.make_bag import main as make_bag
from stereo_depth_ros.tools.replay import main as replay

KITTI_RAW = Path(__file__).resolve().parents[2] / "shared" / "realdata" / "unlabeled" / "sequences" / "kitti_raw_20110926_130432_gray"
STAMPS = ["2011-09-26 13:04:32.351950336", "2011-09-26 13:04:32.455323904", "2011-09-26 13:04:32.558578688",
          "2011-09-26 13:04:32.657578688", "2011-09-26 13:04:32.767578688", "2011-09-26 13:04:32.871578688"]
GT_FRAMES = (1, 3)  # of the recording; played backwards they are frames 4 and 2 of 6


def to8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def sequence(tmp_path_factory):
    """Six 96x64 frames of a synthetic drive in the KITTI sequence layout: left_/right_NNN.png,
    calib.json, KITTI date-time stamps and a sparse (about 4 % of the pixels) uint16/256 disparity
    in gt/ on two frames. Returns the folder, the left images and the raw ground-truth PNGs."""
    root = tmp_path_factory.mktemp("seq") / "drive"
    (root / "gt").mkdir(parents=True)
    samples = list(generate_sequence(3, len(STAMPS), 96, 64, "outdoor"))
    rng = np.random.default_rng(0)
    raw_gt = {}
    for i, s in enumerate(samples):
        cv2.imwrite(str(root / f"left_{i:03d}.png"), cv2.cvtColor(to8(s.left), cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(root / f"right_{i:03d}.png"), cv2.cvtColor(to8(s.right), cv2.COLOR_RGB2BGR))
        if i in GT_FRAMES:
            points = rng.random(s.disparity_left.shape) < 0.04
            raw = np.where(points, np.round(s.disparity_left * 256.0), 0).astype(np.uint16)
            cv2.imwrite(str(root / "gt" / f"disp_lidar_{i:03d}.png"), raw)
            raw_gt[i] = raw
    s = samples[0]
    (root / "calib.json").write_text(json.dumps({"fx": s.focal, "fy": s.focal, "cx": s.cx, "cy": s.cy,
                                                 "baseline_m": s.baseline}))
    (root / "timestamps.txt").write_text("\n".join(STAMPS) + "\n")
    return root, [to8(s.left) for s in samples], raw_gt


def test_kitti_and_euroc_timestamps_parse_to_nanoseconds():
    seconds = int(datetime(2011, 9, 26, 13, 4, 32, tzinfo=timezone.utc).timestamp())
    assert parse_timestamp("2011-09-26 13:04:32.351950336") == seconds * 10**9 + 351950336
    assert parse_timestamp("2011-09-26 13:04:32.35") == seconds * 10**9 + 350000000
    assert parse_timestamp("2011-09-26 13:04:32") == seconds * 10**9
    assert parse_timestamp("1403715273512143104\n") == 1403715273512143104
    for bad in ("13:04:32.35", "2011-09-26", "2011-13-26 13:04:32.1", "1.5e9"):
        with pytest.raises(ValueError, match="expected"):
            parse_timestamp(bad)


def test_reversed_stamps_keep_the_spacing_reversed():
    frames, stamps = reverse_sequence(["a", "b", "c", "d"], [100, 110, 130, 160])
    assert frames == ["d", "c", "b", "a"] and stamps == [100, 130, 150, 160]  # gaps 10, 20, 30 -> 30, 20, 10
    assert reverse_sequence(["a", "b"], None) == (["b", "a"], None)
    with pytest.raises(ValueError, match="strictly increasing"):
        reverse_sequence(["a", "b", "c"], [100, 100, 120])


@pytest.fixture(scope="module")
def reversed_bag(sequence, tmp_path_factory):
    bag = tmp_path_factory.mktemp("bags") / "reversed"
    assert make_bag([str(bag), "--from-frames", str(sequence[0]), "--reverse"]) == 0
    return bag


def test_reversed_sequence_with_sparse_ground_truth_through_make_bag_and_replay(sequence, reversed_bag, tmp_path):
    root, lefts, raw_gt = sequence
    bag = reversed_bag
    frames = list(read_stereo_bag(bag))
    n = len(STAMPS)
    original = [parse_timestamp(s) for s in STAMPS]
    assert [f.stamp_ns for f in frames] == [original[0] + original[-1] - original[n - 1 - k] for k in range(n)]
    played_gt = sorted(n - 1 - i for i in GT_FRAMES)
    assert played_gt == [2, 4]
    for k, frame in enumerate(frames):
        np.testing.assert_array_equal(image_array(frame.left), lefts[n - 1 - k])  # frame N-1 first
        if k not in played_gt:
            assert frame.ground_truth_depth is None  # no message: not an empty one
            continue
        raw = raw_gt[n - 1 - k]
        depth = frame.ground_truth_depth
        np.testing.assert_array_equal(np.isfinite(depth), raw > 0)  # no pixel gained or lost
        camera = frame.camera()
        np.testing.assert_allclose(camera.fx * camera.baseline / depth[raw > 0], raw[raw > 0] / 256.0, rtol=1e-5)

    out = tmp_path / "report"
    assert replay([str(bag), "--mode", "offline", "--output", str(out), "--adaptation", "mad"]) == 0
    report = json.loads((out / "metrics.json").read_text())
    assert report["frames"] == n and report["ground_truth"] and report["ground_truth_frames"] == played_gt
    assert {part: p["gt_frames"] for part, p in report["parts"].items()} == {
        "all": [2, 4], "first_third": [], "middle_third": [2], "last_third": [4]}
    pixels = {k: int(np.count_nonzero(raw_gt[n - 1 - k])) for k in played_gt}
    for arm in ("adapted", "frozen", "sgbm"):
        rows = report["frames_detail"][arm]
        assert [r["frame"] for r in rows if r["scored"]] == played_gt
        for r in rows:
            assert np.isfinite(r["photometric_error"]) and r["photometric_error"] > 0  # every frame, GT or not
            if arm == "sgbm":
                assert r["sgbm_agreement"] is None
            else:
                assert 0 <= r["sgbm_agreement"] <= 100
            if r["scored"]:
                assert r["gt_pixels"] == pixels[r["frame"]]
                assert r["bad3"] >= 100 - r["density"] - 1e-9  # holes count as errors
            else:
                assert "gt_pixels" not in r and "bad3" not in r
        summary = report["summary"][arm]
        assert summary["all"]["gt_pixels"] == sum(pixels.values())
        assert summary["first_third"]["gt_frames"] == [] and "bad3" not in summary["first_third"]
        assert summary["last_third"]["gt_pixels"] == pixels[4]
        assert np.isfinite(summary["first_third"]["photometric_error"])

    # SGBM scored independently, on the recording's own images and ground-truth PNG, agrees.
    sgbm = SgbmBackend()
    for k in played_gt:
        i = n - 1 - k
        left = cv2.cvtColor(cv2.imread(str(root / f"left_{i:03d}.png")), cv2.COLOR_BGR2RGB).astype(np.float32) / 255
        right = cv2.cvtColor(cv2.imread(str(root / f"right_{i:03d}.png")), cv2.COLOR_BGR2RGB).astype(np.float32) / 255
        gt = np.where(raw_gt[i] > 0, raw_gt[i] / 256.0, np.nan)
        ev = evaluate_disparity(sgbm(left, right), gt)
        row = report["frames_detail"]["sgbm"][k]
        assert row["bad3"] == pytest.approx(ev.all.bad3_pct, abs=100.0 / ev.gt_pixels + 1e-9)
        assert row["epe_valid"] == pytest.approx(ev.valid.epe, rel=1e-4)

    text = (out / "report.md").read_text()
    assert "Ground truth on 2 of 6 frames (2, 4)" in text and "last third (frames 4-5): 4" in text
    assert "| adapted | middle third |" in text and "SGBM agreement %" in text
    assert sum(line.startswith("| 4 | ") for line in text.splitlines()) == 3  # one per-frame row per arm
    plot = cv2.imread(str(out / "photometric_error_over_time.png"))
    assert plot is not None and len(np.unique(plot.reshape(-1, 3), axis=0)) > 3


def test_the_live_node_is_scored_on_the_same_sparse_pixels(sequence, reversed_bag, tmp_path):
    import yaml

    raw_gt = sequence[2]
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"/**": {"ros__parameters": {
        "device": "cpu", "sensor_qos": "reliable", "adaptation": {"enabled": False}}}}))
    out = tmp_path / "replay"
    assert replay([str(reversed_bag), "--mode", "replay", "--output", str(out), "--params-file", str(params),
                   "--lockstep"]) == 0
    report = json.loads((out / "metrics.json").read_text())
    assert report["frames_published"] == 6 and report["ground_truth_frames"] == [2, 4]
    node = report["frames_detail"]["node"]
    assert [r["frame"] for r in node if r["scored"]] == [2, 4]
    assert [node[k]["gt_pixels"] for k in (2, 4)] == [int(np.count_nonzero(raw_gt[i])) for i in (3, 1)]
    for r in node:  # what the node published, scored on every frame
        assert r["published"] and np.isfinite(r["photometric_error"]) and 0 <= r["sgbm_agreement"] <= 100
        if r["scored"]:
            assert r["bad3"] >= 100 - r["density"] - 1e-9  # holes count as errors
    assert report["summary"]["node"]["last_third"]["gt_frames"] == [4]


@pytest.mark.parametrize("problem", ["unmatched_gt", "gt_size", "bad_stamp", "missing_gt_dir"])
def test_bad_sequences_end_with_one_line_and_no_bag(sequence, tmp_path, capsys, problem):
    import shutil

    root = tmp_path / "drive"
    shutil.copytree(sequence[0], root)
    extra = []
    if problem == "unmatched_gt":
        cv2.imwrite(str(root / "gt" / "disp_lidar_017.png"), np.ones((64, 96), np.uint16))
    elif problem == "gt_size":
        cv2.imwrite(str(root / "gt" / "disp_lidar_001.png"), np.ones((32, 96), np.uint16))
    elif problem == "bad_stamp":
        (root / "timestamps.txt").write_text("\n".join(STAMPS[:-1] + ["yesterday"]) + "\n")
    else:
        extra = ["--ground-truth", str(tmp_path / "nowhere")]
    assert make_bag([str(tmp_path / "bag"), "--from-frames", str(root), "--reverse", *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("[make_bag] error:") and "\n" not in err and "expected" in err
    assert not any(tmp_path.glob("*bag*"))
    with pytest.raises(SystemExit):
        make_bag([str(tmp_path / "bag2"), "--reverse"])  # only with --from-frames


@pytest.mark.skipif(not KITTI_RAW.is_dir(), reason="../shared/realdata is not here")
def test_the_kitti_raw_drives_stamps_and_lidar_files_are_read():
    stamps = [parse_timestamp(line) for line in (KITTI_RAW / "timestamps.txt").read_text().splitlines() if line.strip()]
    gaps = np.diff(stamps) * 1e-9
    assert len(stamps) == 91 and np.all(gaps > 0.09) and np.all(gaps < 0.12)  # about 10 Hz
    raw = cv2.imread(str(KITTI_RAW / "gt" / "disp_lidar_000.png"), cv2.IMREAD_UNCHANGED)
    assert raw.dtype == np.uint16 and 0.01 < np.count_nonzero(raw) / raw.size < 0.1  # sparse: a LiDAR scan
