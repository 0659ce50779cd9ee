"""SGBM proxy labels: background fill, labels of an analytic pair, the truncated loss, and adaptation with them."""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from stereo_depth_ros.core.adaptation import AdaptationConfig, OnlineAdapter
from stereo_depth_ros.core.proxy import ProxyLabels, fill_background, proxy_loss, sgbm_proxy
from stereo_depth_ros.core.sgbm import SgbmBackend

REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata"
NAN = np.nan


def test_fill_background_takes_the_lower_neighbour_on_the_row():
    d = np.array([[5.0, NAN, NAN, 2.0],
                  [NAN, 3.0, NAN, NAN],
                  [NAN, NAN, NAN, NAN],
                  [1.0, NAN, 7.0, 8.0]], dtype=np.float32)
    out = fill_background(d)
    np.testing.assert_array_equal(out[0], [5, 2, 2, 2])
    np.testing.assert_array_equal(out[1], [3, 3, 3, 3])  # one-sided: the only neighbour
    assert np.isnan(out[2]).all()  # nothing to fill from
    np.testing.assert_array_equal(out[3], [1, 1, 7, 8])
    with pytest.raises(ValueError, match=r"expected an \(H, W\) array"):
        fill_background(np.zeros((2, 2, 2)))


def shifted_pair(disparity: int = 6, height: int = 48, width: int = 96, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A random-texture plane at constant disparity: right(x - d) = left(x)."""
    rng = np.random.default_rng(seed)
    texture = rng.random((height, width + disparity, 3)).astype(np.float32)
    import cv2

    texture = cv2.GaussianBlur(texture, (3, 3), 0.7)
    return np.ascontiguousarray(texture[:, :width]), np.ascontiguousarray(texture[:, disparity:])


def as_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image).permute(2, 0, 1)[None].contiguous()


def test_sgbm_proxy_labels_an_analytic_pair():
    left, right = shifted_pair(6)
    labels = sgbm_proxy(as_tensor(left), as_tensor(right), SgbmBackend(max_disparity=32))
    assert labels.disparity.shape == (1, 1, 48, 96) and labels.valid.dtype == torch.bool
    assert not (labels.valid & labels.filled).any()
    valid = labels.valid[0, 0]
    assert labels.density > 0.8
    np.testing.assert_allclose(labels.disparity[0, 0][valid].numpy(), 6.0, atol=1.0)
    # The left border band (matches outside the right image) is filled, not confident.
    assert (labels.valid | labels.filled)[0, 0].float().mean() > 0.99
    unfilled = sgbm_proxy(as_tensor(left), as_tensor(right), SgbmBackend(max_disparity=32), fill=False)
    assert not unfilled.filled.any() and unfilled.density == pytest.approx(labels.density)


def labels_of(values: torch.Tensor, valid: torch.Tensor, filled: torch.Tensor | None = None) -> ProxyLabels:
    return ProxyLabels(values, valid, torch.zeros_like(valid) if filled is None else filled)


def test_proxy_loss_is_a_truncated_weighted_l1():
    target = torch.full((1, 1, 4, 4), 10.0)
    valid = torch.zeros(1, 1, 4, 4, dtype=torch.bool)
    valid[..., :2, :] = True
    filled = ~valid
    labels = labels_of(target, valid, filled)
    exact, stats = proxy_loss(target.clone(), labels)
    assert float(exact) == 0.0 and stats["agreement"] == 1.0 and stats["density"] == 0.5 and stats["epe"] == 0.0
    pred = target.clone()
    pred[..., :2, :] += 1.0   # confident labels off by 1 px
    pred[..., 2:, :] += 50.0  # filled labels off by 50 px: truncated at 10
    loss, stats = proxy_loss(pred, labels, truncation=10.0, fill_weight=0.5)
    assert float(loss) == pytest.approx((8 * 1.0 + 0.5 * 8 * 10.0) / (8 + 0.5 * 8))
    assert stats["agreement"] == 1.0 and stats["epe"] == pytest.approx(1.0)
    ignored, _ = proxy_loss(pred, labels, fill_weight=0.0)
    assert float(ignored) == pytest.approx(1.0)
    # Gradient: pulls each pixel towards its label, nothing beyond the truncation.
    pred = pred.requires_grad_(True)
    proxy_loss(pred, labels, truncation=10.0, fill_weight=0.5)[0].backward()
    assert (pred.grad[..., :2, :] > 0).all() and (pred.grad[..., 2:, :] == 0).all()
    none, stats = proxy_loss(target, labels_of(target, torch.zeros_like(valid)))
    assert float(none) == 0.0 and np.isnan(stats["agreement"])


def test_proxy_loss_checks_its_inputs():
    labels = labels_of(torch.zeros(1, 1, 4, 4), torch.ones(1, 1, 4, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="like the disparity"):
        proxy_loss(torch.zeros(1, 1, 4, 5), labels)
    with pytest.raises(ValueError, match="truncation: expected a positive"):
        proxy_loss(torch.zeros(1, 1, 4, 4), labels, truncation=0.0)
    with pytest.raises(ValueError, match="fill_weight"):
        proxy_loss(torch.zeros(1, 1, 4, 4), labels, fill_weight=-1.0)


def test_adaptation_config_checks_the_proxy_settings():
    with pytest.raises(ValueError, match="proxy: expected 'sgbm' or 'none'"):
        AdaptationConfig(proxy="sgm")
    with pytest.raises(ValueError, match="proxy_truncation"):
        AdaptationConfig(proxy_truncation=0.0)
    with pytest.raises(ValueError, match="proxy_speckle_window"):
        AdaptationConfig(proxy_speckle_window=-5)


def test_adapter_optimises_the_proxy_term_and_reports_it():
    from stereo_depth_ros.core.network.weights import load_model

    model, _ = load_model()
    left, right = (as_tensor(x) for x in shifted_pair(6, 64, 128))
    adapter = OnlineAdapter(copy.deepcopy(model), AdaptationConfig())
    result = adapter.step(left, right)
    assert result.status == "adapted"
    assert result.terms["proxy_density"] > 0.8 and 0.0 <= result.terms["proxy_agreement"] <= 1.0
    photometric_only = OnlineAdapter(copy.deepcopy(model), AdaptationConfig(proxy="none")).step(left, right)
    assert "proxy" not in photometric_only.terms
    # The loss optimised is photometric + smoothness + proxy: the proxy's share shows in the total.
    t = result.terms
    assert result.loss == pytest.approx(t["photometric"] + 0.01 * t["smoothness"] + t["proxy"], rel=1e-4)
    stats = adapter.stats()
    assert stats["proxy"] == "sgbm" and stats["proxy_density"] == t["proxy_density"]


@pytest.mark.skipif(not (REALDATA / "middlebury" / "Tsukuba").is_dir(), reason="../shared/realdata is not here")
def test_adapting_on_a_real_pair_cuts_its_error():
    """Tsukuba (real, 384x288): 15 default steps cut bad-2 over all GT pixels by at least a tenth; the
    photometric-only variant moves less. (The shipped weights since 2026-12-07: 7.06 -> 6.01 %,
    0.85x; ft-7 before them 7.46 -> 6.15 %, 0.82x: the better start leaves less to cut.)"""
    from stereo_depth_ros.core.datasets import load_middlebury_scene
    from stereo_depth_ros.core.metrics import evaluate_disparity
    from stereo_depth_ros.core.network.weights import load_model
    from stereo_depth_ros.core.test_time import AdaptingBackend, NetworkBackend

    scene = load_middlebury_scene(REALDATA / "middlebury" / "Tsukuba")
    model, _ = load_model()
    bad2 = lambda pred: evaluate_disparity(pred, scene.disparity).all.bad2_pct  # noqa: E731
    frozen = bad2(NetworkBackend(model)(scene.left, scene.right))
    adapted = bad2(AdaptingBackend(model, AdaptationConfig(), steps=15)(scene.left, scene.right))
    photometric = bad2(AdaptingBackend(model, replace(AdaptationConfig(), proxy="none"), 15)(scene.left, scene.right))
    assert adapted < 0.9 * frozen, (frozen, adapted)
    assert adapted < photometric, (adapted, photometric)


def test_ground_truth_oracle_adapts_further_than_the_proxy_labels():
    """The oracle arm (ground truth as the label, the same update rule) on the real Motorcycle pair
    (half of scikit-image's size) ends below the default adaptation's error in the same steps, also
    when adapting at half the image size (labels resized, in that size's pixels); it refuses to run
    without a ground truth of the image's size."""
    pytest.importorskip("skimage")
    from stereo_depth_ros.core.datasets import motorcycle_sample, scale_sample
    from stereo_depth_ros.core.metrics import evaluate_disparity
    from stereo_depth_ros.core.network.weights import load_model
    from stereo_depth_ros.core.test_time import AdaptingBackend, GroundTruthAdaptingBackend, NetworkBackend

    scene = scale_sample(motorcycle_sample(), 0.5)
    model, _ = load_model()
    bad2 = lambda pred: evaluate_disparity(pred, scene.disparity).all.bad2_pct  # noqa: E731
    pair = (scene.left, scene.right)
    for scale in (1.0, 0.5):
        frozen = bad2(NetworkBackend(model, inference_scale=scale)(*pair))
        proxy = bad2(AdaptingBackend(model, AdaptationConfig(), 8, inference_scale=scale)(*pair))
        oracle_backend = GroundTruthAdaptingBackend(model, AdaptationConfig(), 8, inference_scale=scale)
        oracle = bad2(oracle_backend(*pair, scene.disparity))
        assert oracle < proxy < frozen, (scale, frozen, proxy, oracle)
        assert oracle_backend.config.proxy_gate == "none" and oracle_backend.config.proxy_fill_weight == 0.0
    with pytest.raises(ValueError, match="ground_truth"):
        oracle_backend(*pair)
    with pytest.raises(ValueError, match="ground_truth"):
        oracle_backend(*pair, scene.disparity[:-1])


def test_masks_trade_density_for_accuracy_on_the_real_motorcycle_pair():
    """What the node publishes on a real pair (quarter-size Middlebury Motorcycle, shipped with
    scikit-image): its trusted pixels are far more accurate than the dense map; the single-pass
    mode (no left-right check, no second network pass) trusts more pixels, less accurately."""
    pytest.importorskip("skimage")
    from stereo_depth_ros.core.datasets import motorcycle_sample, scale_sample
    from stereo_depth_ros.core.metrics import evaluate_disparity
    from stereo_depth_ros.core.network.weights import load_model
    from stereo_depth_ros.core.test_time import MaskedNetworkBackend, NetworkBackend

    scene = scale_sample(motorcycle_sample(), 0.5)
    model, _ = load_model()
    dense = evaluate_disparity(NetworkBackend(model)(scene.left, scene.right), scene.disparity)
    two = evaluate_disparity(MaskedNetworkBackend(model)(scene.left, scene.right), scene.disparity)
    one = evaluate_disparity(MaskedNetworkBackend(model, single_pass=True)(scene.left, scene.right), scene.disparity)
    assert dense.density > 99.9  # every pixel, less a few where the network says 0 px (metrics: no prediction)
    assert 30 < two.density < one.density < 99, (two.density, one.density)
    assert two.valid.bad2_pct < one.valid.bad2_pct < dense.all.bad2_pct, (two.valid.bad2_pct, one.valid.bad2_pct)
    # The node's default output (fused with SGBM) in both modes: the same per-pixel choice, and the
    # single pass publishes every pixel the two-pass mode does, and more (no left-right test).
    fused_two, fused_one = MaskedNetworkBackend(model, fusion=True), MaskedNetworkBackend(model, fusion=True, single_pass=True)
    assert (fused_two.name, fused_one.name) == ("node_fused", "node_fused_single_pass")
    d_two, d_one = fused_two(scene.left, scene.right), fused_one(scene.left, scene.right)
    assert np.isfinite(d_one)[np.isfinite(d_two)].all()
    np.testing.assert_array_equal(d_one[np.isfinite(d_two)], d_two[np.isfinite(d_two)])
    assert evaluate_disparity(d_one, scene.disparity).density > evaluate_disparity(d_two, scene.disparity).density


def test_the_photometric_gate_keeps_labels_that_reconstruct_better_and_holds_the_reference():
    """Depth Hints' rule on an analytic pair (true disparity 6 px, textured), then a flat pair."""
    from stereo_depth_ros.core.losses import photometric_error
    from stereo_depth_ros.core.self_supervision import gate_labels
    from stereo_depth_ros.core.warping import warp_right_to_left

    left, right = (as_tensor(x) for x in shifted_pair(6))
    inside = (slice(None), slice(None), slice(4, -4), slice(16, -4))  # away from borders and out-of-view columns

    def error_of(value: float) -> torch.Tensor:
        recon, _ = warp_right_to_left(right, torch.full((1, 1, 48, 96), value), padding_mode="border")
        return photometric_error(recon, left)

    ones = torch.ones(1, 1, 48, 96, dtype=torch.bool)
    none = torch.zeros_like(ones)
    right_label = ProxyLabels(torch.full((1, 1, 48, 96), 6.0), ones, none)
    wrong_label = ProxyLabels(torch.full((1, 1, 48, 96), 9.0), ones, none)
    # Without a reference: a right label is kept against a wrong prediction, a wrong one dropped.
    assert gate_labels(right_label, left, right, error_of(8.0), margin=0.2).valid[inside].all()
    assert not gate_labels(wrong_label, left, right, error_of(6.0), margin=0.2).valid[inside].any()
    # With the reference (right, 6 px): a wrong SGBM label loses to it; the reference is the label.
    wrong_label.reference = torch.full((1, 1, 48, 96), 6.0)
    gated = gate_labels(wrong_label, left, right, error_of(8.0), margin=0.2)
    assert gated.valid[inside].all() and (gated.disparity[inside] == 6.0).all()
    assert not gated.learnable[inside].any()  # nothing to learn: the reference was right
    # A right SGBM label against a wrong reference: learnable.
    right_label.reference = torch.full((1, 1, 48, 96), 9.0)
    gated = gate_labels(right_label, left, right, error_of(9.0), margin=0.2)
    assert gated.learnable[inside].all() and (gated.disparity[inside] == 6.0).all()
    # A flat pair: no label can be told from the prediction; the reference holds the prediction.
    flat = torch.full((1, 3, 48, 96), 0.5)
    flat_error = torch.zeros(1, 1, 48, 96)  # every warp of a flat image reconstructs it exactly
    labels = ProxyLabels(torch.full((1, 1, 48, 96), 9.0), ones, none, reference=torch.full((1, 1, 48, 96), 3.0))
    gated = gate_labels(labels, flat, flat, flat_error, margin=0.2)
    assert gated.valid.all() and (gated.disparity == 3.0).all() and not gated.filled.any()
    assert not gated.learnable.any()
    with pytest.raises(ValueError, match="margin"):
        gate_labels(labels, flat, flat, flat_error, margin=1.0)


def test_score_labels_counts_fixable_and_misleading_pixels():
    """A hand-made row of five pixels (0-based): the prediction is right on pixel 0 and wrong on 1-3;
    pixel 1 has a right SGBM label, pixel 2 a wrong filled one, pixel 3 none; pixel 4's ground truth
    is unknown."""
    from stereo_depth_ros.core.proxy import score_labels

    t = lambda *v: torch.tensor(v, dtype=torch.float32).view(1, 1, 1, -1)  # noqa: E731
    b = lambda *v: torch.tensor(v, dtype=torch.bool).view(1, 1, 1, -1)  # noqa: E731
    gt = t(10.0, 20.0, 30.0, 40.0, float("inf"))
    prediction = t(10.5, 25.0, 35.0, 45.0, 7.0)
    labels = ProxyLabels(t(11.0, 20.5, 10.0, 0.0, 3.0), b(1, 1, 0, 0, 1), b(0, 0, 1, 0, 0),
                         learnable=b(0, 1, 1, 0, 1))
    s = score_labels(prediction, labels, gt)
    assert s["wrong"] == pytest.approx(75.0) and s["valid_density"] == pytest.approx(50.0)
    assert s["valid_bad"] == 0.0 and s["filled_bad"] == 100.0
    assert s["fixable_valid"] == pytest.approx(100 / 3) and s["fixable_filled"] == 0.0
    assert s["misleading"] == pytest.approx(100 / 3) and s["unlabelled"] == pytest.approx(100 / 3)
    assert s["learnable"] == pytest.approx(50.0) and s["learnable_precision"] == pytest.approx(50.0)
    assert s["learnable_fixes"] == pytest.approx(100 / 3)
    with pytest.raises(ValueError, match="ground_truth"):
        score_labels(prediction, labels, t(0.0, 0.0, 0.0, 0.0, 0.0))
    with pytest.raises(ValueError, match="ground_truth"):
        score_labels(prediction, labels, gt[..., :4])


def test_label_quality_tool_on_the_real_motorcycle_pair(tmp_path, capsys):
    """The tool scores SGBM's labels on a real pair (a quarter of scikit-image's size): its confident
    labels are mostly right there; a wrong path is a one-line error and no output file."""
    pytest.importorskip("skimage")
    import json

    from stereo_depth_ros.tools.label_quality import main

    out = tmp_path / "labels.json"
    assert main(["--path", "motorcycle", "--scale", "0.25", "--margins", "0.2", "--output", str(out)]) == 0
    table = capsys.readouterr().out
    assert "| motorcycle |" in table and "| **median** |" in table
    row = json.loads(out.read_text())["scenes"][0]
    assert row["valid_density"] > 50 and row["valid_bad"] < 25
    assert 0 < row["gate 0.2"]["learnable"] < 100 and row["gate 0.2"]["learnable_precision"] > 50
    from stereo_depth_ros.core.network.weights import load_weights
    from stereo_depth_ros.core.pipeline import weights_inference_scale

    shipped_scale = weights_inference_scale(load_weights(None)[1])
    assert json.loads(out.read_text())["inference_scale"] == shipped_scale  # the weights' own by default
    # The network at another scale predicts differently; SGBM's labels (at the scene's size) do not change.
    assert main(["--path", "motorcycle", "--scale", "0.25", "--margins", "0.2", "--inference-scale", "0.5",
                 "--output", str(out)]) == 0
    half = json.loads(out.read_text())
    assert half["inference_scale"] == 0.5 and "inference_scale 0.5" in capsys.readouterr().out
    assert half["scenes"][0]["valid_bad"] == row["valid_bad"] and half["scenes"][0]["wrong"] != row["wrong"]
    with pytest.raises(SystemExit):
        main(["--path", "motorcycle", "--inference-scale", "2.5"])
    assert main(["--path", str(tmp_path / "nope"), "--output", str(tmp_path / "x.json")]) == 1
    assert not (tmp_path / "x.json").exists()
    # The synthetic test split instead of real scenes.
    assert main(["--synthetic", "outdoor", "--num-samples", "1", "--size", "128x96", "--margins", "0.2"]) == 0
    assert "| outdoor_" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--synthetic", "outdoor", "--size", "3x"])


def test_adapting_on_an_upsampled_pair_labels_with_sgbm_on_the_images_as_they_are(monkeypatch):
    """At an inference_scale above 1 the test-time adapter's SGBM labels are those the node uses: SGBM
    on the images as they are, brought to the network's size (run_matcher), not SGBM on the
    upsampled images; at scale 1 the adapter computes them itself, as before."""
    from stereo_depth_ros.core.adaptation import OnlineAdapter, proxy_matcher
    from stereo_depth_ros.core.network.weights import load_model
    from stereo_depth_ros.core.pipeline import run_matcher
    from stereo_depth_ros.core.synthetic import generate_sample
    from stereo_depth_ros.core.test_time import AdaptingBackend, _pair

    s = generate_sample(3, width=128, height=96, domain="indoor")
    model, _ = load_model()
    seen = []
    step = OnlineAdapter.step

    def recording_step(self, left, right, matcher_disparity=None):  # what each step is given
        seen.append((tuple(left.shape), matcher_disparity))
        return step(self, left, right, matcher_disparity)

    monkeypatch.setattr(OnlineAdapter, "step", recording_step)
    AdaptingBackend(model, AdaptationConfig(), 1, inference_scale=1.5)(s.left, s.right)
    (shape, labels), = seen
    lt, rt = _pair(s.left, s.right, torch.device("cpu"))
    expected = run_matcher(proxy_matcher(AdaptationConfig(), 192.0), lt, rt, (144, 192))
    assert shape == (1, 3, 144, 192) and labels.shape == (1, 144, 192)
    np.testing.assert_array_equal(np.nan_to_num(labels[0], nan=-1.0), np.nan_to_num(expected, nan=-1.0))
    AdaptingBackend(model, AdaptationConfig(), 1)(s.left, s.right)
    assert seen[1][0] == (1, 3, 96, 128) and seen[1][1] is None
