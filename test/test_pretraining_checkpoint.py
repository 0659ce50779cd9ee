"""The checkpoints kept in training/: the pretrained and the fine-tuned cost-volume networks (the
shipped weights are a copy of ``costvolume_finetuned_scale12``). Each loads through its sidecar as the
cost-volume network, says how it was made and from what, and has learned to match."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from stereo_depth_ros.core.network.costvolume import CostVolumeNet
from stereo_depth_ros.core.network.weights import load_model

CHECKPOINT = Path(__file__).resolve().parents[1] / "training" / "costvolume_objects.safetensors"
FINETUNED = CHECKPOINT.with_name("costvolume_finetuned.safetensors")
FINETUNED_STAGE5 = CHECKPOINT.with_name("costvolume_finetuned_stage5.safetensors")
FINETUNED_STAGE6 = CHECKPOINT.with_name("costvolume_finetuned_stage6.safetensors")
FINETUNED_STAGE7 = CHECKPOINT.with_name("costvolume_finetuned_stage7.safetensors")
FINETUNED_HYPOTHESES = CHECKPOINT.with_name("costvolume_finetuned_hypotheses.safetensors")
FINETUNED_HYPOTHESES2 = CHECKPOINT.with_name("costvolume_finetuned_hypotheses2.safetensors")
FINETUNED_SCALE12 = CHECKPOINT.with_name("costvolume_finetuned_scale12.safetensors")


def test_the_shipped_weights_are_the_fine_tuning_at_1_2x():
    from stereo_depth_ros.core.network.weights import DEFAULT_WEIGHTS

    assert DEFAULT_WEIGHTS.read_bytes() == FINETUNED_SCALE12.read_bytes()
    shipped = json.loads(DEFAULT_WEIGHTS.with_suffix(".json").read_text())
    kept = json.loads(FINETUNED_SCALE12.with_suffix(".json").read_text())
    assert shipped["all_stages"] == kept["all_stages"] and shipped["licences"] == kept["licences"]


def test_the_fine_tuning_at_1_2x_asks_to_run_at_that_scale():
    """``costvolume_finetuned_scale12`` was fine-tuned on frames resized 1.2x (``--frame-scale 1.2``):
    its metadata names 1.2, which the node and the tools take by default (it is the shipped file); the
    weights shipped before it (``costvolume_finetuned_hypotheses``) name none and run at 1.0."""
    from stereo_depth_ros.core.network.weights import DEFAULT_WEIGHTS, load_weights
    from stereo_depth_ros.core.pipeline import weights_inference_scale

    sidecar = json.loads(FINETUNED_SCALE12.with_suffix(".json").read_text())
    assert sidecar["frame_scale"] == 1.2 and "--frame-scale 1.2" in sidecar["all_stages"][-1]["command"]
    assert weights_inference_scale(load_weights(FINETUNED_SCALE12)[1]) == 1.2
    assert weights_inference_scale(load_weights(DEFAULT_WEIGHTS)[1]) == 1.2
    assert weights_inference_scale(load_weights(FINETUNED_HYPOTHESES)[1]) == 1.0


def test_the_checkpoint_loads_as_the_cost_volume_network_with_its_record():
    model, meta = load_model(CHECKPOINT)
    assert isinstance(model, CostVolumeNet) and meta["config"]["architecture"] == "costvolume"
    stages = meta["stages"]
    assert len(stages) >= 1 and stages[0]["from_step"] == 0
    assert all(a["to_step"] == b["from_step"] for a, b in zip(stages, stages[1:]))  # one unbroken chain
    assert stages[-1]["to_step"] == meta["steps"] and all("--domain objects" in s["command"] for s in stages)
    sidecar = json.loads(CHECKPOINT.with_suffix(".json").read_text())
    sources = sidecar["data"]["sources"]
    assert "objects" in sidecar["data"]["domain"].split(",") and all(s["licence"] for s in sources)
    assert "Motorcycle" in sidecar["data"]["excluded"] and "KITTI raw" in sidecar["data"]["excluded"]


@pytest.mark.parametrize("path", [FINETUNED, FINETUNED_STAGE5, FINETUNED_STAGE6, FINETUNED_STAGE7, FINETUNED_HYPOTHESES,
                                  FINETUNED_HYPOTHESES2, FINETUNED_SCALE12],
                         ids=["ft-A", "stage5", "stage6", "stage7", "hypotheses", "hypotheses2", "scale12-shipped"])
def test_the_fine_tuned_checkpoint_names_every_stage_and_source(path):
    model, meta = load_model(path)
    assert isinstance(model, CostVolumeNet)
    sidecar = json.loads(path.with_suffix(".json").read_text())
    stages = sidecar["all_stages"]
    assert stages[0]["from_step"] == 0 and "--domain objects" in stages[0]["command"]  # from scratch
    assert "--unlabeled" in stages[-1]["command"] and stages[-1]["steps"] == meta["steps"]
    held_out = ("Art", "Cones", "Tsukuba", "Venus", "motorcycle", "kitti_raw")
    for source in sidecar["data"]["fine_tuning"]:
        assert not any(name in source["path"] for name in held_out), source["path"]
        name = source["path"].rstrip("/").split("/")[-1]
        assert any(name in key for key in sidecar["licences"]), f"no licence named for {source['path']}"
    assert all(name in sidecar["excluded"] for name in ("Art", "Cones", "Tsukuba", "Venus", "Motorcycle", "KITTI raw"))


@pytest.mark.parametrize("path", [CHECKPOINT, FINETUNED, FINETUNED_STAGE5, FINETUNED_STAGE6, FINETUNED_STAGE7,
                                  FINETUNED_HYPOTHESES, FINETUNED_HYPOTHESES2, FINETUNED_SCALE12],
                         ids=["pretrained", "finetuned", "finetuned_stage5", "finetuned_stage6", "finetuned_stage7",
                              "finetuned_hypotheses", "finetuned_hypotheses2", "finetuned_scale12"])
@pytest.mark.parametrize("shift", [6, 12, 20])
def test_the_checkpoint_finds_a_known_shift(path, shift):
    """A random texture and its copy shifted by ``shift`` pixels: the disparity is that shift."""
    import cv2

    model, _ = load_model(path)
    model.eval()
    rng = np.random.default_rng(0)
    height, width = 96, 160
    wide = cv2.GaussianBlur(rng.random((height, width + shift)).astype(np.float32), (3, 3), 0.8)
    left = torch.from_numpy(wide[:, :width].copy())[None, None].repeat(1, 3, 1, 1)
    right = torch.from_numpy(wide[:, shift:shift + width].copy())[None, None].repeat(1, 3, 1, 1)
    with torch.no_grad():
        disparity = model(left, right).disparity[0, 0]
    inner = disparity[8:-8, shift + 8:-8]  # away from the borders and the unmatched left band
    assert abs(float(inner.median()) - shift) < 1.0
    assert float(((inner - shift).abs() < 1.0).float().mean()) > 0.7
