"""The adaptation benchmark's signal check and a tiny end-to-end run of its command."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from stereo_depth_ros.tools import bench_adaptation as bench

H, W, D = 24, 48, 4  # image size and the true, constant disparity (pixels)


class ConstantDisparity:
    """Stands in for the network: predicts one disparity everywhere."""

    def __init__(self, value: float) -> None:
        self.value = value

    def __call__(self, left: torch.Tensor, right: torch.Tensor) -> SimpleNamespace:
        return SimpleNamespace(disparity=torch.full_like(left[:, :1], self.value))


def pair(textured: bool) -> tuple[torch.Tensor, torch.Tensor, np.ndarray, np.ndarray]:
    """A rectified pair of one fronto-parallel plane at disparity D: left(x) = right(x - D)."""
    rng = np.random.default_rng(0)
    strip = rng.random((3, H, W + D)) if textured else np.full((3, H, W + D), 0.4)
    left = torch.tensor(strip[:, :, :W], dtype=torch.float32)[None]
    right = torch.tensor(strip[:, :, D:], dtype=torch.float32)[None]
    occluded = np.zeros((H, W), bool)
    occluded[:, :D] = True  # their match lies left of the right image
    return left, right, np.full((H, W), float(D), np.float32), occluded


def test_signal_prefers_the_ground_truth_on_texture():
    s = bench.photometric_signal(ConstantDisparity(D + 5.0), [pair(textured=True)])
    assert s["wrong_share"] == 1.0  # every visible pixel is 5 px off
    assert s["loss_gt"] < 0.05 < s["loss_pred"] and s["gt_better"] > 0.95
    census = bench.photometric_signal(ConstantDisparity(D + 5.0), [pair(textured=True)], image_loss="census")
    assert census["loss_gt"] < census["loss_pred"] and census["gt_better"] > 0.9


def test_signal_is_absent_on_a_textureless_surface():
    s = bench.photometric_signal(ConstantDisparity(D + 5.0), [pair(textured=False)])
    assert s["wrong_share"] == 1.0
    assert s["loss_gt"] == pytest.approx(s["loss_pred"], abs=1e-6) and s["gt_better"] == 0.0


def test_signal_without_wrong_pixels_is_nan():
    s = bench.photometric_signal(ConstantDisparity(D + 1.0), [pair(textured=True)])
    assert s["wrong_share"] == 0.0 and np.isnan(s["gt_better"]) and np.isnan(s["loss_gt"])


def test_command_runs_and_writes_the_curves_and_the_signal(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    out = tmp_path / "bench.json"
    assert bench.main(["--frames", "4", "--size", "64x48", "--modes", "none", "full", "--forgetting-samples", "1",
                       "--step-time-sizes", "--disparity-range", "3", "20", "--output", str(out)]) == 0
    report = json.loads(out.read_text())
    assert set(report["modes"]) == {"none", "full"} and len(report["modes"]["full"]["epe_curve"]) == 4
    assert report["config"]["disparity_range"] == [3.0, 20.0]
    from stereo_depth_ros.core.network.weights import load_weights
    from stereo_depth_ros.core.pipeline import weights_inference_scale

    assert report["config"]["inference_scale"] == weights_inference_scale(load_weights(None)[1])  # weights' own
    assert 0.0 <= report["signal"]["wrong_share"] <= 1.0
    assert "Signal (every 10th frame" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        bench.main(["--frames", "2", "--size", "64x48", "--disparity-range", "20", "3", "--output", str(out)])


def test_an_explicit_scale_is_used_and_a_bad_one_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    out = tmp_path / "bench.json"
    assert bench.main(["--frames", "2", "--size", "64x48", "--modes", "full", "--forgetting-samples", "1",
                       "--step-time-sizes", "64x48", "--inference-scale", "1.5", "--output", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["config"]["inference_scale"] == 1.5
    assert set(report["step_ms"]) == {"full@64x48", "mad@64x48", "inference@64x48"}
    assert "inference_scale 1.5" in capsys.readouterr().out
    for bad in ("3", "-1"):
        with pytest.raises(SystemExit):
            bench.main(["--frames", "2", "--size", "64x48", "--inference-scale", bad,
                        "--output", str(tmp_path / "x.json")])
    assert not (tmp_path / "x.json").exists()


def test_the_adapter_gets_what_the_node_gives_it_at_each_scale():
    """Upsampled: the images at the network's size and SGBM's labels of the pair as it is
    (``run_matcher``); downsampled: the resized images, the adapter labels them itself."""
    from stereo_depth_ros.core.adaptation import AdaptationConfig, proxy_matcher
    from stereo_depth_ros.core.pipeline import run_matcher

    left, right, _, _ = pair(textured=True)
    matcher = proxy_matcher(AdaptationConfig(), 16.0)
    same = bench.adaptation_inputs(left, right, 1.0, matcher)
    assert same[0] is left and same[1] is right and same[2] is None
    up_left, up_right, labels = bench.adaptation_inputs(left, right, 1.5, matcher)
    assert up_left.shape[-2:] == up_right.shape[-2:] == (36, 72) and labels.shape == (1, 36, 72)
    np.testing.assert_array_equal(labels[0], run_matcher(matcher, left, right, (36, 72)))
    assert np.nanmedian(labels[0, :, 12:]) == pytest.approx(1.5 * D, abs=0.5)  # the plane, at the upsampled size
    down = bench.adaptation_inputs(left, right, 0.5, matcher)
    assert down[0].shape[-2:] == (32, 32) and down[2] is None  # at least 32 px a side
    assert bench.adaptation_inputs(left, right, 1.5, None)[2] is None  # proxy "none": no SGBM labels
