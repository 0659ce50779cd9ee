import json

import numpy as np
import pytest
import torch

from stereo_depth_ros.core.metrics import aggregate, evaluate_disparity
from stereo_depth_ros.core.network import NetworkConfig, StereoNet
from stereo_depth_ros.core.network.estimator import StereoEstimator, image_to_tensor
from stereo_depth_ros.core.network.layers import concat_channels, correlation, half_resolution, unit_channels
from stereo_depth_ros.core.network.supervision import supervised_loss
from stereo_depth_ros.core.network.weights import DEFAULT_WEIGHTS, WeightsError, load_model, load_weights, save_weights
from stereo_depth_ros.core.sgbm import SgbmBackend
from stereo_depth_ros.core.synthetic import generate_sample, split_seeds


@pytest.fixture(scope="module")
def net() -> StereoNet:
    torch.manual_seed(0)
    return StereoNet().eval()


@pytest.mark.parametrize("size", [(64, 64), (97, 131), (240, 320)])
def test_any_input_size_gives_full_resolution_disparity(net, size):
    height, width = size
    with torch.no_grad():
        out = net(torch.rand(2, 3, height, width), torch.rand(2, 3, height, width))
    assert out.disparity.shape == (2, 1, height, width) and (out.disparity >= 0).all()
    ph, pw = out.padded_size
    assert ph % 64 == 0 and pw % 64 == 0 and ph - height < 64 and pw - width < 64
    assert sorted(out.levels) == [1, 2, 3, 4, 5, 6]
    for level, d in out.levels.items():
        assert d.shape == (2, 1, ph // 2**level, pw // 2**level)
    assert out.level_at_full_resolution(3, height, width).shape == (2, 1, height, width)


def test_grey_input_equals_replicated_colour(net):
    grey_l, grey_r = torch.rand(1, 1, 64, 128), torch.rand(1, 1, 64, 128)
    with torch.no_grad():
        a = net(grey_l, grey_r).disparity
        b = net(grey_l.expand(-1, 3, -1, -1), grey_r.expand(-1, 3, -1, -1)).disparity
    torch.testing.assert_close(a, b)


def test_budget_structure_and_blocks(net):
    params = sum(p.numel() for p in net.parameters())
    assert params < 5_000_000
    assert not any(isinstance(m, (torch.nn.BatchNorm2d, torch.nn.GroupNorm, torch.nn.InstanceNorm2d)) for m in net.modules())
    assert NetworkConfig().max_disparity >= 192
    # Blocks partition the parameters: every parameter belongs to exactly one block (MAD adaptation).
    seen = [id(p) for name in net.blocks() for p in net.block_parameters(name)]
    assert len(seen) == len(set(seen)) == len(list(net.parameters()))
    with pytest.raises(ValueError, match="block: expected one of"):
        net.block_parameters("level9")


def test_correlation_peaks_at_the_true_shift():
    gen = torch.Generator().manual_seed(0)
    right = torch.randn(1, 8, 4, 20, generator=gen)
    left = torch.roll(right, shifts=3, dims=-1)  # left(u) = right(u - 3)
    cost = correlation(left, right, 0, 5)
    assert cost.shape == (1, 6, 4, 20)
    assert torch.all(cost[..., 5:].argmax(dim=1) == 3)
    torch.testing.assert_close(cost[:, 3, :, 5:], torch.ones(1, 4, 15))  # cosine similarity of equal vectors
    with pytest.raises(ValueError, match="min_shift <= max_shift"):
        correlation(left, right, 2, 1)


@pytest.mark.parametrize("dim", [1, 2])
def test_unit_channels_is_torchs_normalize_with_finite_gradients_at_zero(dim):
    gen = torch.Generator().manual_seed(2)
    features = torch.randn(2, 4, 8, 6, 7, generator=gen) * 5.0
    features[..., :2, :] = 0.0  # zero vectors, as warped features read outside the image
    features[..., 3, 3] = 1e-8  # below eps: divided by eps, as torch does
    features.requires_grad_(True)
    unit = unit_channels(features, dim=dim)
    torch.testing.assert_close(unit, torch.nn.functional.normalize(features, dim=dim, eps=1e-6))
    norms = unit.detach().norm(dim=dim)
    kept = norms[..., 2:, :]
    assert torch.allclose(kept[kept > 0.5], torch.tensor(1.0)) and torch.all(norms[..., :2, :] == 0)
    (unit * torch.randn(unit.shape, generator=gen)).sum().backward()
    assert torch.isfinite(features.grad).all() and features.grad.abs().sum() > 0


def test_supervised_loss_reaches_every_parameter():
    torch.manual_seed(1)
    model = StereoNet()
    left, right = torch.rand(1, 3, 64, 128), torch.rand(1, 3, 64, 128)
    gt = torch.full((1, 1, 64, 128), 10.0)
    loss, terms = supervised_loss(model(left, right), gt, torch.ones_like(gt, dtype=torch.bool), 192.0)
    loss.backward()
    assert set(terms) == {"final", "level1", "level2", "level3", "level4", "level5", "level6"}
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_forward_rejects_bad_inputs(net):
    with pytest.raises(ValueError, match="right: expected batch 1 and size"):
        net(torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 96))
    with pytest.raises(ValueError, match="1 or 3 channels"):
        net(torch.rand(1, 2, 64, 64), torch.rand(1, 2, 64, 64))


def test_weights_round_trip_without_pickle(tmp_path, net):
    path = save_weights(net, tmp_path / "w.safetensors", {"note": "test", "metrics": {"epe": 1.5}})
    assert path.read_bytes()[8:9] == b"{"  # safetensors: 8-byte header length, then a JSON header
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.json", "w.safetensors"]  # no temp files left
    assert json.loads((tmp_path / "w.json").read_text())["metrics"] == {"epe": 1.5}
    model, meta = load_model(path)
    assert meta["note"] == "test" and meta["config"]["max_disparity"] == 192
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x, x).disparity, net(x, x).disparity)


def test_missing_corrupt_and_mismatched_weights_give_clear_errors(tmp_path, net):
    with pytest.raises(FileNotFoundError, match="network weights not found"):
        load_weights(tmp_path / "nope.safetensors")
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x00" * 64)
    with pytest.raises(WeightsError, match="not a valid safetensors file"):
        load_weights(corrupt)
    truncated = tmp_path / "truncated.safetensors"
    data = save_weights(net, tmp_path / "full.safetensors").read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError):
        load_model(truncated)
    other = StereoNet(NetworkConfig(refinement_channels=32))
    save_weights(other.state_dict(), tmp_path / "other.safetensors", config=NetworkConfig())
    with pytest.raises(WeightsError, match="do not match the network"):
        load_model(tmp_path / "other.safetensors")


def test_image_to_tensor_formats():
    rgb8 = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    t = image_to_tensor(rgb8)
    assert t.shape == (1, 3, 5, 7) and t.dtype == torch.float32
    torch.testing.assert_close(t[0, :, 2, 3], torch.from_numpy(rgb8[2, 3] / 255.0).float())
    assert image_to_tensor(np.zeros((5, 7), np.uint16)).shape == (1, 3, 5, 7)
    with pytest.raises(ValueError, match="expected uint8, uint16 or float"):
        image_to_tensor(np.zeros((5, 7, 3), np.int32))
    with pytest.raises(ValueError, match=r"expected \(H, W\)"):
        image_to_tensor(np.zeros((5, 7, 4), np.uint8))


@pytest.fixture(scope="module")
def shipped() -> StereoEstimator:
    if not DEFAULT_WEIGHTS.is_file():
        pytest.fail(f"the shipped weights are missing: {DEFAULT_WEIGHTS}")
    return StereoEstimator.from_weights()


def test_shipped_weights_have_their_sidecar(shipped):
    sidecar = json.loads(DEFAULT_WEIGHTS.with_suffix(".json").read_text())
    assert DEFAULT_WEIGHTS.stat().st_size < 20e6
    for key in ("training_command", "data", "validation", "config"):
        assert key in sidecar and key in shipped.metadata


def test_shipped_weights_beat_sgbm_on_a_small_fixed_set(shipped):
    sgbm = SgbmBackend()
    net_all, sgbm_all, net_on_sgbm = [], [], []
    for seed in split_seeds("test", 6):
        s = generate_sample(seed, width=640, height=480, domain="indoor")
        pred, ref = shipped(s.left, s.right), sgbm(s.left, s.right)
        net_all.append(evaluate_disparity(pred, s.disparity_left))
        sgbm_all.append(evaluate_disparity(ref, s.disparity_left))
        net_on_sgbm.append(evaluate_disparity(pred, s.disparity_left, mask=np.isfinite(ref)))
        assert net_all[-1].all.bad3_pct < sgbm_all[-1].all.bad3_pct  # holes count as errors
    # Pixel-weighted over the set: fewer bad pixels overall, and a lower EPE even on SGBM's own
    # valid pixels (on easy frames SGBM's valid pixels alone can be more accurate).
    assert aggregate(net_all).all.bad3_pct < 0.6 * aggregate(sgbm_all).all.bad3_pct
    assert aggregate(net_on_sgbm).all.epe < aggregate(sgbm_all).valid.epe


def test_right_disparity_from_the_mirrored_pair_is_consistent(shipped):
    s = generate_sample(split_seeds("test", 1)[0], width=320, height=256, domain="indoor")
    dl, dr = shipped.predict_both(image_to_tensor(s.left), image_to_tensor(s.right))
    ok = ~s.occlusion_right
    err = np.abs(dr[0, 0].numpy() - s.disparity_right)[ok]
    assert np.median(err) < 3.0


def test_correlation_is_the_dot_product_of_unit_vectors_with_its_gradients():
    gen = torch.Generator().manual_seed(6)
    left = torch.randn(2, 6, 5, 9, generator=gen, dtype=torch.float64)
    right = torch.randn(2, 6, 5, 9, generator=gen, dtype=torch.float64)
    right[..., 4] = 0.0  # zero vectors, as warped features read outside the image
    for min_shift, max_shift in ((-2, 2), (0, 4), (-3, -1), (1, 3), (-12, 12)):  # the last beyond the width
        a, b = left.clone().requires_grad_(True), right.clone().requires_grad_(True)
        got = correlation(a, b, min_shift, max_shift)
        unit_left, unit_right = unit_channels(a), unit_channels(b)
        expected = torch.zeros_like(got)
        for i, s in enumerate(range(min_shift, max_shift + 1)):
            for u in range(9):
                if 0 <= u - s < 9:
                    expected[:, i, :, u] = (unit_left[..., u] * unit_right[..., u - s]).sum(dim=1)
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)
        weights = torch.randn(got.shape, generator=gen, dtype=torch.float64)
        grads = torch.autograd.grad((got * weights).sum(), (a, b), retain_graph=True)
        for x, y in zip(grads, torch.autograd.grad((expected * weights).sum(), (a, b))):
            torch.testing.assert_close(x, y, rtol=0, atol=1e-9)


def test_half_resolution_is_two_by_two_average_pooling_with_its_gradients():
    gen = torch.Generator().manual_seed(7)
    for shape in ((2, 3, 8, 12), (1, 5, 6, 10), (1, 3, 7, 9)):  # the last odd: avg_pool2d itself
        images = torch.rand(shape, generator=gen, dtype=torch.float64)
        for layout in (torch.contiguous_format, torch.channels_last):
            a = images.contiguous(memory_format=layout).requires_grad_(True)
            b = images.clone().requires_grad_(True)
            got, expected = half_resolution(a), torch.nn.functional.avg_pool2d(b, 2)
            torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)
            weights = torch.rand(expected.shape, generator=gen, dtype=torch.float64)
            (grad_a,), (grad_b,) = (torch.autograd.grad((x * weights).sum(), (y,))
                                    for x, y in ((got, a), (expected, b)))
            torch.testing.assert_close(grad_a, grad_b, rtol=0, atol=1e-12)


def test_concat_channels_is_torch_cat_and_keeps_channels_last():
    gen = torch.Generator().manual_seed(8)
    maps = [torch.rand(2, c, 5, 7, generator=gen, dtype=torch.float64) for c in (4, 1, 3)]
    expected = torch.cat(maps, dim=1)
    plain = concat_channels(maps)
    assert plain.is_contiguous() and torch.equal(plain, expected)
    mixed = [maps[0].contiguous(memory_format=torch.channels_last).requires_grad_(True), maps[1], maps[2]]
    got = concat_channels(mixed)
    assert torch.equal(got, expected) and not got.is_contiguous()
    assert got.is_contiguous(memory_format=torch.channels_last)
    (grad,) = torch.autograd.grad((got * torch.arange(8.0, dtype=torch.float64).view(1, 8, 1, 1)).sum(), (mixed[0],))
    assert torch.equal(grad, torch.arange(4.0, dtype=torch.float64).view(1, 4, 1, 1).expand(2, 4, 5, 7))
