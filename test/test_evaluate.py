"""tools.evaluate: the CLI on tiny synthetic samples, the folder loader and evaluate() with an oracle."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from stereo_depth_ros.tools import evaluate as ev


class Oracle:
    """A backend that returns the ground truth of the sample it was built for (by image identity)."""

    name = "oracle"

    def __init__(self, samples: list[ev.EvalSample]) -> None:
        self._gt = {id(s.left): s.disparity for s in samples}

    def __call__(self, left: np.ndarray, right: np.ndarray) -> np.ndarray:
        return self._gt[id(left)].copy()


class HalfHoles:
    """A backend that predicts GT + 0.5 px on the right half and nothing on the left half."""

    name = "half"

    def __init__(self, gt: np.ndarray) -> None:
        self.gt = gt

    def __call__(self, left: np.ndarray, right: np.ndarray) -> np.ndarray:
        out = self.gt + 0.5
        out[:, : self.gt.shape[1] // 2] = np.nan
        return out


def tiny_samples(count: int = 2, height: int = 24, width: int = 32) -> list[ev.EvalSample]:
    rng = np.random.default_rng(0)
    samples = []
    for i in range(count):
        gt = rng.uniform(2.0, 10.0, (height, width)).astype(np.float32)
        gt[0, 0] = np.nan  # one pixel without ground truth
        image = rng.random((height, width, 3)).astype(np.float32)
        samples.append(ev.EvalSample(image, image.copy(), gt, focal=100.0, baseline=0.1, name=f"s{i}"))
    return samples


def test_oracle_through_evaluate(tmp_path: Path):
    samples = tiny_samples()
    report = ev.evaluate([Oracle(samples)], samples, tmp_path, progress=False)
    s = report["summary"]["oracle"]
    assert s["all"]["epe"] == 0 and s["valid"]["epe"] == 0 and s["density"] == 100
    assert s["all"]["d1_all"] == 0 and s["all"]["abs_rel"] == pytest.approx(0, abs=1e-6) and s["all"]["delta1"] == 100
    assert s["gt_pixels"] == 2 * (24 * 32 - 1)
    assert report["methods"] == ["oracle"] and report["num_samples"] == 2
    assert (tmp_path / "metrics.json").is_file() and (tmp_path / "metrics.md").is_file()
    assert (tmp_path / "sample_000.png").is_file() and (tmp_path / "sample_001.png").is_file()


def test_reference_rows_and_holes(tmp_path: Path):
    samples = tiny_samples(1)
    gt = samples[0].disparity

    class Ref(HalfHoles):
        name = "sgbm"

    report = ev.evaluate([Oracle(samples), Ref(gt)], samples, None, progress=False)
    assert report["methods"] == ["oracle", "oracle@sgbm_valid", "sgbm"]
    ref = report["summary"]["sgbm"]
    assert ref["density"] == pytest.approx(100 * (24 * 16) / (24 * 32 - 1))
    assert ref["valid"]["epe"] == pytest.approx(0.5) and ref["valid"]["bad1"] == 0
    assert ref["all"]["bad1"] == pytest.approx(100 - ref["density"])  # only holes are bad-1
    on_ref = report["summary"]["oracle@sgbm_valid"]
    assert on_ref["gt_pixels"] == 24 * 16 and on_ref["all"]["epe"] == 0
    assert "oracle on sgbm's valid pixels" in report["table"]


def test_breakdown_by_ground_truth_disparity(tmp_path: Path):
    samples = tiny_samples(2)  # GT uniform in [2, 10) px

    class TooFar:  # reads every surface 10 % too far: the bias grows with the disparity
        name = "too_far"

        def __init__(self) -> None:
            self.gt = iter(s.disparity for s in samples)

        def __call__(self, left: np.ndarray, right: np.ndarray) -> np.ndarray:
            return 0.9 * next(self.gt)

    report = ev.evaluate([TooFar()], samples, tmp_path, progress=False, warmup=False, save_images=False,
                         disparity_bands=(0, 6, 100))
    low, high = report["by_disparity"]["bands"]["too_far"]
    gt = np.concatenate([s.disparity.ravel() for s in samples])
    gt = gt[np.isfinite(gt)]
    assert low["gt_pixels"] == np.count_nonzero(gt < 6) and high["gt_pixels"] == np.count_nonzero(gt >= 6)
    assert low["share"] + high["share"] == pytest.approx(100.0)
    assert low["all"]["bias"] == pytest.approx(-0.1 * gt[gt < 6].mean(), rel=1e-5)
    assert high["all"]["bias"] == pytest.approx(-0.1 * gt[gt >= 6].mean(), rel=1e-5)
    assert high["all"]["epe"] == pytest.approx(-high["all"]["bias"])
    assert "| 6-100 |" in report["table"] and "too_far bias" in (tmp_path / "metrics.md").read_text()
    assert "by_disparity" not in ev.evaluate([Oracle(samples)], samples, None, progress=False, disparity_bands=None)
    with pytest.raises(ValueError, match="edges: expected"):
        ev.evaluate([Oracle(samples)], samples, None, progress=False, disparity_bands=(5, 1))


def test_regions_split_each_backends_bad2_pixels_and_add_up_to_its_bad2(tmp_path: Path):
    samples = tiny_samples(2)  # random GT: every pixel is next to a depth edge, no weak texture to speak of
    occluded = np.zeros((24, 32), dtype=bool)
    occluded[:, 20:] = True
    samples[0] = ev.EvalSample(samples[0].left, samples[0].right, samples[0].disparity, focal=100.0, baseline=0.1,
                               occlusion=occluded, name="s0")
    report = ev.evaluate([HalfHoles(samples[0].disparity)], samples[:1], tmp_path, progress=False, warmup=False,
                         save_images=False, regions=True)
    counts = report["samples"][0]["regions"]
    assert sum(counts["pixels"].values()) == 24 * 32 - 1  # the regions cover every GT pixel once
    assert counts["pixels"]["occluded"] == 24 * 12
    # HalfHoles leaves the left half empty (holes are errors) and is 0.5 px off on the right half:
    # its bad-2 pixels are the left half's GT pixels, none of them occluded.
    assert counts["bad2"]["half"]["occluded"] == 0
    assert sum(counts["bad2"]["half"].values()) == 24 * 16 - 1
    assert report["summary"]["half"]["all"]["bad2"] == pytest.approx(100 * (24 * 16 - 1) / (24 * 32 - 1))
    assert report["regions"]["bad2"]["half"] == counts["bad2"]["half"]
    assert "Where the bad-2 pixels are" in (tmp_path / "metrics.md").read_text()
    assert "regions" not in ev.evaluate([Oracle(samples)], samples, None, progress=False)
    with pytest.raises(SystemExit):
        ev.parse_args(["--regions", "--region-edge-px", "-1"])


def test_evaluate_rejects_bad_input():
    samples = tiny_samples(1)
    with pytest.raises(ValueError, match="at least one backend"):
        ev.evaluate([], samples, None)
    with pytest.raises(ValueError, match="expected an EvalSample"):
        ev.evaluate([Oracle(samples)], [object()], None, progress=False)

    class Wrong:
        name = "wrong"

        def __call__(self, left, right):
            return np.zeros((3, 3), np.float32)

    with pytest.raises(ValueError, match="backend 'wrong'"):
        ev.evaluate([Wrong()], samples, None, progress=False)
    with pytest.raises(ValueError, match="EvalSample.disparity"):
        ev.EvalSample(samples[0].left, samples[0].right, np.zeros((2, 2)))
    with pytest.raises(ValueError, match="focal and baseline"):
        ev.EvalSample(samples[0].left, samples[0].right, samples[0].disparity, focal=1.0)


def write_folder_dataset(root: Path) -> dict[str, np.ndarray]:
    """Two samples: 'a' with .npy GT, 'b' with a KITTI 16-bit PNG (disparity * 256, 0 = invalid)."""
    rng = np.random.default_rng(1)
    for sub in ("left", "right", "disparity"):
        (root / sub).mkdir(parents=True)
    gts = {}
    for stem in ("a", "b"):
        image = (rng.random((20, 30, 3)) * 255).astype(np.uint8)
        cv2.imwrite(str(root / "left" / f"{stem}.png"), image)
        cv2.imwrite(str(root / "right" / f"{stem}.png"), image[:, ::-1])
        gt = np.round(rng.uniform(1.0, 50.0, (20, 30)) * 256) / 256
        gt[2, 3] = np.nan
        gts[stem] = gt.astype(np.float32)
    np.save(root / "disparity" / "a.npy", gts["a"])
    png = np.nan_to_num(gts["b"] * 256, nan=0).astype(np.uint16)
    cv2.imwrite(str(root / "disparity" / "b.png"), png)
    (root / "calib.json").write_text(json.dumps({"focal": 200.0, "baseline": 0.2, "samples": {"b": {"focal": 100.0}}}))
    return gts


def test_folder_loader_npy_and_kitti_png(tmp_path: Path):
    gts = write_folder_dataset(tmp_path)
    samples = list(ev.load_folder_samples(tmp_path))
    assert [s.name for s in samples] == ["a", "b"]
    for s in samples:
        assert s.left.shape == (20, 30, 3) and s.left.dtype == np.float32 and 0 <= s.left.min() and s.left.max() <= 1
        assert np.isnan(s.disparity[2, 3]) and np.isfinite(s.disparity).sum() == 20 * 30 - 1
        ok = np.isfinite(gts[s.name])
        np.testing.assert_allclose(s.disparity[ok], gts[s.name][ok], atol=1 / 512)
    assert (samples[0].focal, samples[0].baseline) == (200.0, 0.2)
    assert (samples[1].focal, samples[1].baseline) == (100.0, 0.2)  # per-sample override
    # RGB order: the loader returns what was written as BGR, flipped to RGB
    raw = cv2.imread(str(tmp_path / "left" / "a.png"))
    np.testing.assert_allclose(samples[0].left[..., 0], raw[..., 2] / 255.0, atol=1e-6)
    assert len(list(ev.load_folder_samples(tmp_path, num_samples=1))) == 1


def test_folder_loader_errors(tmp_path: Path):
    with pytest.raises(ValueError, match="not a directory"):
        ev.load_folder_samples(tmp_path / "missing")
    write_folder_dataset(tmp_path)
    (tmp_path / "disparity" / "b.png").unlink()
    with pytest.raises(ValueError, match="expected b.npy, b.png or b.pfm"):
        ev.load_folder_samples(tmp_path)
    cv2.imwrite(str(tmp_path / "disparity" / "b.png"), np.zeros((20, 30), np.uint8))  # 8-bit: wrong
    with pytest.raises(ValueError, match="16-bit PNG"):
        list(ev.load_folder_samples(tmp_path))


def test_read_pfm(tmp_path: Path):
    data = np.arange(6, dtype="<f4").reshape(2, 3)
    data[0, 0] = np.inf
    with open(tmp_path / "d.pfm", "wb") as f:
        f.write(b"Pf\n3 2\n-1.0\n" + data[::-1].tobytes())
    d = ev.read_disparity(tmp_path / "d.pfm")
    assert d.shape == (2, 3) and np.isnan(d[0, 0]) and d[1, 2] == 5.0 and d[0, 1] == 1.0


def test_main_folder_dataset_sgbm(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    write_folder_dataset(tmp_path / "data")
    out = tmp_path / "out"
    assert ev.main(["--dataset", "folder", "--path", str(tmp_path / "data"), "--backend", "sgbm",
                    "--output", str(out), "--no-images"]) == 0
    report = json.loads((out / "metrics.json").read_text())
    assert [s["name"] for s in report["samples"]] == ["a", "b"]
    assert not list(out.glob("sample_*.png"))
    assert "| sgbm |" in capsys.readouterr().out


def test_main_synthetic_sgbm(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    pytest.importorskip("stereo_depth_ros.core.synthetic")
    out = tmp_path / "eval"
    rc = ev.main(["--dataset", "synthetic", "--num-samples", "2", "--width", "160", "--height", "120",
                  "--backend", "sgbm", "--output", str(out)])
    assert rc == 0
    for name in ("metrics.json", "metrics.md", "sample_000.png", "sample_001.png"):
        assert (out / name).is_file(), name
    image = cv2.imread(str(out / "sample_000.png"))
    assert image is not None and image.shape == (2 * 240, 2 * 320, 3)  # 2 rows; tiles enlarged to 320 px
    report = json.loads((out / "metrics.json").read_text())
    assert report["methods"] == ["sgbm"] and len(report["samples"]) == 2
    s = report["summary"]["sgbm"]
    assert s["gt_pixels"] == 2 * 160 * 120
    assert 20 < s["density"] <= 100
    assert 0 <= s["valid"]["epe"] <= s["all"]["epe"] < 200
    assert 0 <= s["valid"]["d1_all"] <= s["all"]["d1_all"] <= 100
    assert s["valid"]["abs_rel"] >= 0 and s["valid"]["rmse"] >= 0 and 0 <= s["valid"]["delta1"] <= 100
    assert s["runtime_ms"]["mean"] > 0 and s["runtime_ms"]["frames"] == 2
    assert report["backends"]["sgbm"]["params"]["numDisparities"] == 48
    table = capsys.readouterr().out
    assert "| sgbm | all GT |" in table and "| sgbm | own valid |" in table
    assert (out / "metrics.md").read_text().startswith("| Method |")


def test_main_network_and_sgbm(tmp_path: Path):
    """The default backend runs the network and SGBM side by side (only when the network is shipped)."""
    estimator = pytest.importorskip("stereo_depth_ros.core.network.estimator")
    pytest.importorskip("stereo_depth_ros.core.synthetic")
    try:
        estimator.StereoEstimator.from_weights(None)
    except (OSError, ValueError, RuntimeError) as exc:
        pytest.skip(f"no usable shipped weights: {exc}")
    out = tmp_path / "eval"
    assert ev.main(["--num-samples", "1", "--width", "160", "--height", "128", "--output", str(out)]) == 0
    report = json.loads((out / "metrics.json").read_text())
    assert report["methods"] == ["network", "network@sgbm_valid", "sgbm"]
    net = report["summary"]["network"]
    assert net["density"] > 50 and math.isfinite(net["all"]["epe"])
    # Two sets of weights in one run: the same weights under another name score the same.
    from stereo_depth_ros.core.network.weights import DEFAULT_WEIGHTS

    copy = tmp_path / "copy.safetensors"
    copy.write_bytes(DEFAULT_WEIGHTS.read_bytes())
    assert ev.main(["--num-samples", "1", "--width", "160", "--height", "128", "--output", str(out),
                    "--compare-weights", str(copy)]) == 0
    report = json.loads((out / "metrics.json").read_text())
    assert "network_copy" in report["methods"]
    assert report["summary"]["network_copy"]["all"]["epe"] == pytest.approx(report["summary"]["network"]["all"]["epe"])
    # Weights that name a scale run at it by default (--inference-scale 0), at the one given otherwise.
    from stereo_depth_ros.core.network.weights import load_model, load_weights, save_weights
    from stereo_depth_ros.core.pipeline import weights_inference_scale

    shipped_scale = weights_inference_scale(load_weights(DEFAULT_WEIGHTS)[1])
    assert shipped_scale != 1.5
    scaled = tmp_path / "scaled.safetensors"
    save_weights(load_model()[0], scaled, {"inference_scale": 1.5})
    compare = ["--num-samples", "1", "--width", "160", "--height", "128", "--output", str(out),
               "--compare-weights", str(scaled), "--no-images"]
    assert ev.main(compare) == 0
    report = json.loads((out / "metrics.json").read_text())
    assert report["config"]["inference_scale"] == {"network": shipped_scale, "network_scaled": 1.5}
    epe = {name: report["summary"][name]["all"]["epe"] for name in ("network", "network_scaled")}
    assert epe["network_scaled"] != pytest.approx(epe["network"], rel=1e-4)
    assert ev.main([*compare, "--inference-scale", "1"]) == 0
    report = json.loads((out / "metrics.json").read_text())
    assert report["config"]["inference_scale"] == {"network": 1.0, "network_scaled": 1.0}
    summary = report["summary"]
    assert summary["network_scaled"]["all"]["epe"] == pytest.approx(summary["network"]["all"]["epe"])


def test_main_bad_arguments(tmp_path: Path):
    with pytest.raises(SystemExit):
        ev.main(["--dataset", "folder"])  # no --path
    with pytest.raises(SystemExit):
        ev.main(["--num-samples", "-1"])
    with pytest.raises(SystemExit):
        ev.main(["--disparity-bands", "32", "16"])
    assert ev.parse_args(["--disparity-bands"]).disparity_bands == []  # none: no breakdown
    assert ev.main(["--dataset", "folder", "--path", str(tmp_path / "nope"), "--backend", "sgbm",
                    "--output", str(tmp_path / "o")]) == 1


def test_main_adapt_oracle_arm(tmp_path: Path):
    """--adapt-oracle adds 'adapted_oracle' (the ground truth as the adaptation's label) beside the
    default arms; it needs --adapt-steps."""
    pytest.importorskip("stereo_depth_ros.core.synthetic")
    out = tmp_path / "eval"
    assert ev.main(["--num-samples", "1", "--width", "128", "--height", "96", "--output", str(out), "--no-images",
                    "--adapt-steps", "2", "--adapt-oracle"]) == 0
    report = json.loads((out / "metrics.json").read_text())
    assert {"adapted", "adapted_photometric", "adapted_oracle"} <= set(report["methods"])
    assert report["adaptation"]["adapted_oracle"][0]["steps"] == 2
    with pytest.raises(SystemExit):
        ev.main(["--adapt-oracle"])
