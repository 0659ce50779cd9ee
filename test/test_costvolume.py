"""The full-range cost-volume network: shapes, gradients, MAD blocks, the cost volume's geometry,
weights that name their architecture, and old MADNet sidecars still loading."""

import json
import math

import cv2
import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from stereo_depth_ros.core.adaptation import AdaptationConfig, OnlineAdapter
from stereo_depth_ros.core.network import (CostVolumeConfig, CostVolumeNet, NetworkConfig, StereoNet, StereoNetwork,
                                           build_network, config_from_dict)
from stereo_depth_ros.core.network.costvolume import groupwise_correlation, soft_argmin
from stereo_depth_ros.core.network.estimator import predict_left_right
from stereo_depth_ros.core.network.supervision import supervised_loss
from stereo_depth_ros.core.network.weights import load_model, save_weights


@pytest.fixture(scope="module")
def net() -> CostVolumeNet:
    torch.manual_seed(0)
    return CostVolumeNet().eval()


def texture_pair(shift: int, height: int = 64, width: int = 256, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A random texture seen at a constant disparity ``shift``: ``left(u) = right(u - shift)``, ``(1, 3, H, W)``."""
    rng = np.random.default_rng(seed)
    texture = cv2.GaussianBlur(rng.random((height, width + shift, 3)).astype(np.float32), (3, 3), 0.8)
    to_tensor = lambda im: torch.from_numpy(np.ascontiguousarray(im)).permute(2, 0, 1)[None]  # noqa: E731
    return to_tensor(texture[:, :width]), to_tensor(texture[:, shift:])


@pytest.mark.parametrize("size", [(64, 64), (97, 131), (45, 203)])
def test_any_input_size_gives_full_resolution_disparity_and_three_levels(net, size):
    height, width = size
    with torch.no_grad():
        out = net(torch.rand(2, 3, height, width), torch.rand(2, 3, height, width))
    assert out.disparity.shape == (2, 1, height, width) and (out.disparity >= 0).all()
    ph, pw = out.padded_size
    assert ph % 32 == 0 and pw % 32 == 0 and ph - height < 32 and pw - width < 32
    assert sorted(out.levels) == [1, 2, 3]
    for level, d in out.levels.items():
        assert d.shape == (2, 1, ph // 2**level, pw // 2**level) and torch.isfinite(d).all()
    # The soft-argmin of the volume level stays inside the searched range.
    assert out.levels[3].min() >= 0 and out.levels[3].max() <= 192 / 8
    assert out.level_at_full_resolution(2, height, width).shape == (2, 1, height, width)
    with pytest.raises(ValueError, match="decoded levels"):
        out.level_at_full_resolution(5, height, width)


def test_grey_input_equals_replicated_colour_and_bad_inputs_are_refused(net):
    grey_l, grey_r = torch.rand(1, 1, 64, 96), torch.rand(1, 1, 64, 96)
    with torch.no_grad():
        torch.testing.assert_close(net(grey_l, grey_r).disparity,
                                   net(grey_l.expand(-1, 3, -1, -1), grey_r.expand(-1, 3, -1, -1)).disparity)
    with pytest.raises(ValueError, match="right: expected batch 1 and size"):
        net(torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 96))
    with pytest.raises(ValueError, match="1 or 3 channels"):
        net(torch.rand(1, 2, 64, 64), torch.rand(1, 2, 64, 64))


def test_supervised_loss_reaches_every_parameter():
    torch.manual_seed(1)
    model = CostVolumeNet()
    left, right = texture_pair(16, 64, 128)
    gt = torch.full((1, 1, 64, 128), 16.0)
    loss, terms = supervised_loss(model(left, right), gt, torch.ones_like(gt, dtype=torch.bool), 192.0)
    loss.backward()
    assert set(terms) == {"final", "level1", "level2", "level3"}
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().max() > 0, name


def test_blocks_partition_the_parameters_and_no_batch_norm(net):
    assert list(net.blocks()) == ["level3", "level2", "level1"]
    seen = [id(p) for name in net.blocks() for p in net.block_parameters(name)]
    assert len(seen) == len(set(seen)) == len(list(net.parameters()))
    with pytest.raises(ValueError, match="block: expected one of"):
        net.block_parameters("level6")
    two = CostVolumeNet(CostVolumeConfig(output_level=2, decoder_channels=((16, 16),)))
    assert list(two.blocks()) == ["level3", "level2"]
    seen = [id(p) for name in two.blocks() for p in two.block_parameters(name)]
    assert len(seen) == len(set(seen)) == len(list(two.parameters()))
    assert not any(isinstance(m, (torch.nn.BatchNorm2d, torch.nn.SyncBatchNorm)) for m in net.modules())
    assert sum(p.numel() for p in net.parameters()) < 2_000_000


def test_groupwise_correlation_is_the_cosine_similarity_per_group_and_shift():
    gen = torch.Generator().manual_seed(0)
    right = torch.randn(1, 8, 4, 20, generator=gen)
    left = torch.roll(right, shifts=3, dims=-1)  # left(u) = right(u - 3) for u >= 3
    # Group 1 (channels 4..7) of the left view matches at shift 5 instead.
    left[:, 4:] = torch.roll(right[:, 4:], shifts=5, dims=-1)
    cost = groupwise_correlation(left, right, 6, groups=2)
    assert cost.shape == (1, 2, 7, 4, 20)
    assert torch.all(cost[0, 0, :, :, 6:].argmax(dim=0) == 3) and torch.all(cost[0, 1, :, :, 6:].argmax(dim=0) == 5)
    torch.testing.assert_close(cost[0, 0, 3, :, 3:], torch.ones(4, 17))  # equal vectors: cosine 1
    torch.testing.assert_close(cost[0, 1, 5, :, 5:], torch.ones(4, 15))
    # One hand-computed entry, and zeros where u - s falls outside the right view.
    u, v, s = 10, 2, 4
    a, b = left[0, :4, v, u], right[0, :4, v, u - s]
    torch.testing.assert_close(cost[0, 0, s, v, u], torch.dot(a, b) / (a.norm() * b.norm()))
    assert torch.all(cost[..., 4, :, :4] == 0)
    for kwargs, message in [(dict(max_shift=-1, groups=2), "max_shift"), (dict(max_shift=3, groups=3), "groups"),
                            (dict(max_shift=2.5, groups=2), "max_shift")]:
        with pytest.raises(ValueError, match=message):
            groupwise_correlation(left, right, **kwargs)
    with pytest.raises(ValueError, match="right: expected the shape"):
        groupwise_correlation(left, right[..., :10], 3, 2)


def test_soft_argmin_is_the_expected_disparity():
    scores = torch.full((1, 5, 1, 2), -1e4)
    scores[0, 3, 0, 0] = 0.0  # a sharp peak at 3
    scores[0, 1, 0, 1] = scores[0, 2, 0, 1] = 0.0  # two equal peaks: halfway
    torch.testing.assert_close(soft_argmin(scores), torch.tensor([[[[3.0, 1.5]]]]))
    torch.testing.assert_close(soft_argmin(torch.zeros(1, 5, 2, 2)), torch.full((1, 1, 2, 2), 2.0))  # uniform: mean


@pytest.mark.parametrize("shift", [24, 64])
def test_untrained_network_cost_volume_finds_a_known_shift(shift):
    """Features are translation-equivariant: a texture moved by a multiple of the volume's stride
    moves its 1/8 features by ``shift / 8``, so the raw volume peaks there, before any training."""
    torch.manual_seed(3)
    model = CostVolumeNet().eval()
    left, right = texture_pair(shift, height=96)
    with torch.no_grad():
        volume = model.cost_volume(left, right)
    assert volume.shape == (1, 8, 25, 12, 32)
    found = volume.sum(dim=1).argmax(dim=1)[0]  # (h, w) at 1/8
    margin = 2  # features next to the image border see the convolutions' zero padding
    inner = found[margin:-margin, shift // 8 + margin: -margin]
    assert inner.numel() > 0 and torch.all(inner == shift // 8)


def test_configs_name_their_architecture_and_refuse_bad_values():
    assert NetworkConfig().architecture == "madnet" and CostVolumeConfig().architecture == "costvolume"
    assert CostVolumeConfig().search == 24 and CostVolumeConfig().stride == 32
    assert CostVolumeConfig(volume_level=2, feature_channels=(16, 32), decoder_channels=((16,),)).search == 48
    assert config_from_dict({"max_disparity": 128}) == NetworkConfig(max_disparity=128)  # old sidecars: madnet
    round_trip = json.loads(json.dumps(CostVolumeConfig(groups=4).to_dict()))
    assert config_from_dict(round_trip) == CostVolumeConfig(groups=4)
    for kwargs, message in [(dict(groups=7), "groups"), (dict(max_disparity=100), "max_disparity"),
                            (dict(volume_level=4), "volume_level"), (dict(feature_channels=(16, 32)), "feature_channels"),
                            (dict(decoder_channels=((32,),)), "decoder_channels"), (dict(architecture="madnet"), "architecture"),
                            (dict(correlation_radius=0), "correlation_radius"), (dict(expansion=0), "expansion"),
                            (dict(context_level=4), "context_level"), (dict(context_channels=0), "context_channels"),
                            (dict(context_dilations=()), "context_dilations"),
                            (dict(context_dilations=(1, 0)), "context_dilations")]:
        with pytest.raises(ValueError, match=message):
            CostVolumeConfig(**kwargs)
    with pytest.raises(ValueError, match="architecture: expected one of"):
        config_from_dict({"architecture": "psmnet"})
    with pytest.raises(ValueError, match="unknown fields"):
        config_from_dict({"architecture": "costvolume", "encoder_channels": [1, 2]})
    with pytest.raises(ValueError, match="architecture"):
        NetworkConfig(architecture="costvolume")
    assert isinstance(build_network(CostVolumeConfig()), CostVolumeNet) and isinstance(build_network(None), StereoNet)
    with pytest.raises(ValueError, match="expected a NetworkConfig"):
        StereoNet(CostVolumeConfig())
    with pytest.raises(ValueError, match="expected a CostVolumeConfig"):
        CostVolumeNet(NetworkConfig())


def test_weights_round_trip_selects_the_architecture(tmp_path, net):
    path = save_weights(net, tmp_path / "cv.safetensors", {"note": "cost volume"})
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["config"]["architecture"] == "costvolume" and sidecar["config"]["groups"] == 8
    model, meta = load_model(path)
    assert isinstance(model, CostVolumeNet) and model.config == net.config and meta["note"] == "cost volume"
    x, y = texture_pair(16, 64, 96)
    with torch.no_grad():
        torch.testing.assert_close(model(x, y).disparity, net(x, y).disparity, rtol=0, atol=0)
    # Both disparities in one batched pass work for it too (the node's left-right check).
    with torch.no_grad():
        dl, dr = predict_left_right(model, x, y)
    assert dl.shape == dr.shape == (1, 1, 64, 96)


def test_madnet_weights_written_before_the_architecture_field_still_load(tmp_path):
    """A sidecar config without ``architecture`` (every file written before it existed) is the MADNet-style network."""
    small = NetworkConfig(encoder_channels=(8,) * 6, decoder_channels=((8, 8, 8),) * 6, refinement_channels=8)
    torch.manual_seed(2)
    original = StereoNet(small).eval()
    new = save_weights(original, tmp_path / "new.safetensors")
    with safe_open(str(new), framework="pt") as f:
        metadata = dict(f.metadata())
    config = json.loads(metadata["config"])
    assert config.pop("architecture") == "madnet"
    metadata["config"] = json.dumps(config)
    old = tmp_path / "old.safetensors"
    save_file(load_file(str(new)), str(old), metadata=metadata)
    model, meta = load_model(old)
    assert isinstance(model, StereoNet) and model.config == small and "architecture" not in meta["config"]
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x, x).disparity, original(x, x).disparity, rtol=0, atol=0)


def test_mad_adaptation_updates_one_block_of_the_cost_volume_network():
    torch.manual_seed(4)
    model = CostVolumeNet()
    assert isinstance(model, StereoNetwork)
    adapter = OnlineAdapter(model, AdaptationConfig(mode="mad", learning_rate=1e-5, proxy="none", multiscale=True))
    left, right = texture_pair(16, 64, 128)
    for _ in range(3):
        before = {k: v.detach().clone() for k, v in model.named_parameters()}
        result = adapter.step(left, right)
        block = {n for n, p in model.named_parameters() if any(p is q for q in model.block_parameters(result.block))}
        changed = {k for k, v in model.named_parameters() if not torch.equal(before[k], v.detach())}
        assert result.status == "adapted" and math.isfinite(result.loss) and changed == block
        assert "photometric_multiscale" in result.terms


@pytest.mark.parametrize("level", [3, 2, 1])
def test_context_stage_starts_as_the_identity_learns_and_is_part_of_its_levels_block(level):
    """A dilated context stage refines one level's disparity: added to a trained network it changes
    nothing until trained, the loss reaches it, and MAD updates it with its level."""
    torch.manual_seed(2)
    plain = CostVolumeNet().eval()
    with_context = CostVolumeNet(CostVolumeConfig(context_level=level)).eval()
    _, unexpected = with_context.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected
    left, right = texture_pair(16, 64, 128)
    with torch.no_grad():
        assert torch.equal(with_context(left, right).disparity, plain(left, right).disparity)
    assert with_context.context in with_context.blocks()[f"level{level}"]
    seen = [id(p) for name in with_context.blocks() for p in with_context.block_parameters(name)]
    assert len(seen) == len(set(seen)) == len(list(with_context.parameters()))
    gt = torch.full((1, 1, 64, 128), 16.0)
    loss, _ = supervised_loss(with_context.train()(left, right), gt, torch.ones_like(gt, dtype=torch.bool), 192.0)
    loss.backward()
    assert with_context.context.head.weight.grad.abs().max() > 0  # the zero head learns first
