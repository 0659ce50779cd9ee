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
    assert 0.0 <= report["signal"]["wrong_share"] <= 1.0
    assert "Signal (every 10th frame" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        bench.main(["--frames", "2", "--size", "64x48", "--disparity-range", "20", "3", "--output", str(out)])
