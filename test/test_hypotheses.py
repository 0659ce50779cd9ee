"""Neighbourhood disparity hypotheses and the learned selector among them: the window extremes
analytically, the selector starting as (nearly) the identity inside a trained network, MAD blocks,
and the selector learning to cross a fattened depth edge that a residual search cannot."""

import cv2
import numpy as np
import pytest
import torch

from stereo_depth_ros.core.network import CostVolumeConfig, CostVolumeNet
from stereo_depth_ros.core.network.base import HypothesisChoice
from stereo_depth_ros.core.network.hypotheses import HypothesisSelector, neighbourhood_hypotheses
from stereo_depth_ros.core.network.supervision import hypothesis_loss, supervised_loss
from stereo_depth_ros.core.network.weights import load_model, save_weights

from test_costvolume import texture_pair


def test_hypotheses_are_the_disparity_and_its_windows_extremes():
    disparity = torch.full((1, 1, 9, 20), 4.0)
    disparity[..., 10:] = 12.0  # a vertical depth edge between columns 9 and 10
    disparity[0, 0, 4, 2] = 7.0  # a lone bump
    hyp = neighbourhood_hypotheses(disparity, 3)
    assert hyp.shape == (1, 3, 9, 20) and torch.equal(hyp[:, :1], disparity)
    smallest, largest = hyp[0, 1], hyp[0, 2]
    assert torch.all(largest[:, 7:] == 12.0) and torch.all(largest[:, :7] <= 7.0)  # the foreground, 3 px out
    assert torch.all(smallest[:, :13] == 4.0) and torch.all(smallest[:, 13:] == 12.0)  # the background, 3 px in
    assert largest[4, 0] == 7.0 and largest[0, 0] == 4.0 and largest[1, 5] == 7.0 and largest[0, 6] == 4.0
    noise = torch.rand(2, 1, 23, 31, generator=torch.Generator().manual_seed(3)) * 50.0  # separable = square pooling
    square = torch.nn.functional.max_pool2d(noise, 11, stride=1, padding=5)
    assert torch.equal(neighbourhood_hypotheses(noise, 5)[:, 2:], square)
    assert torch.equal(neighbourhood_hypotheses(noise, 5)[:, 1:2], -torch.nn.functional.max_pool2d(-noise, 11, 1, 5))
    for radius in (1, 2, 3, 4, 8, 20):  # every step count of the doubling, windows wider than the map
        size = 2 * radius + 1
        square = torch.nn.functional.max_pool2d(
            torch.nn.functional.pad(noise, (radius,) * 4, value=float("-inf")), size, stride=1)
        assert torch.equal(neighbourhood_hypotheses(noise, radius)[:, 2:], square), radius
    bump = torch.zeros(1, 1, 9, 9)
    bump[..., 4, 4] = 1.0
    bump.requires_grad_(True)  # the gradient reaches the one maximum of each window that holds the bump
    neighbourhood_hypotheses(bump, 2)[:, 2].sum().backward()
    assert bump.grad[0, 0, 4, 4] == 25.0
    with pytest.raises(ValueError, match="radius"):
        neighbourhood_hypotheses(disparity, 0)
    with pytest.raises(ValueError, match="disparity"):
        neighbourhood_hypotheses(disparity[0], 2)


def test_config_places_the_selector_below_the_volume_and_round_trips(tmp_path):
    for kwargs, message in [(dict(hypothesis_level=3), "hypothesis_level"), (dict(hypothesis_radius=0), "hypothesis_radius"),
                            (dict(hypothesis_channels=0), "hypothesis_channels"),
                            (dict(hypothesis_level=1, output_level=2, decoder_channels=((8,),)), "hypothesis_level")]:
        with pytest.raises(ValueError, match=message):
            CostVolumeConfig(**kwargs)
    config = CostVolumeConfig(hypothesis_level=2, hypothesis_radius=5, hypothesis_channels=16)
    torch.manual_seed(0)
    model = CostVolumeNet(config)
    path = tmp_path / "h.safetensors"
    save_weights(model, path, {"note": "test"})
    loaded, meta = load_model(path)
    assert loaded.config == config and meta["config"]["hypothesis_level"] == 2
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))


def _texture(height: int, width: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur(rng.random((height, width, 3)).astype(np.float32), (3, 3), 0.8)


@pytest.mark.parametrize("level", [2, 1])
def test_selector_starts_near_the_identity_learns_and_is_part_of_its_levels_block(level):
    torch.manual_seed(2)
    plain = CostVolumeNet().eval()
    with_selector = CostVolumeNet(CostVolumeConfig(hypothesis_level=level)).eval()
    missing, unexpected = with_selector.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing and all(name.startswith("hypotheses.") for name in missing)
    left, right = texture_pair(16, height=64, width=128)
    with torch.no_grad():
        a, b = plain(left, right).disparity, with_selector(left, right).disparity
    # The three hypotheses agree where the disparity is flat; elsewhere the others weigh 4.5 % each at first.
    assert float((a - b).abs().max()) < 0.1 * max(1.0, float(a.max() - a.min()))
    assert with_selector.hypotheses in with_selector.blocks()[f"level{level}"]
    seen = [id(p) for name in with_selector.blocks() for p in with_selector.block_parameters(name)]
    assert len(seen) == len(set(seen)) == len(list(with_selector.parameters()))
    gt = torch.full((1, 1, 64, 128), 16.0)
    gt[..., 40:] = 4.0
    output = with_selector.train()(left, right)
    assert output.hypotheses is not None and output.hypotheses.level == level
    assert output.select(slice(0, 1)).hypotheses.logits.shape == output.hypotheses.logits.shape
    loss, terms = supervised_loss(output, gt, torch.ones_like(gt, dtype=torch.bool), 192.0)
    assert terms["hypotheses"] > 0  # the edge at column 40 makes the hypotheses differ there
    loss.backward()
    assert with_selector.hypotheses.head.weight.grad.abs().max() > 0
    assert "hypotheses" not in supervised_loss(plain(left, right), gt, torch.ones_like(gt, dtype=torch.bool), 192.0)[1]


def test_hypothesis_loss_targets_the_hypothesis_nearest_the_ground_truth():
    """Level 1 (stride 2) of a 4x8 input: the ground truth is sampled at each level pixel's centre and
    halved; the target is the nearest hypothesis where they spread by more than 1 px; a selector
    sure of the wrong one has a large loss and a gradient, sure of the right one almost none."""
    truth = torch.full((1, 1, 4, 8), 6.0)  # 3 px at level 1
    truth[..., 4:] = 20.0  # 10 px at level 1
    candidates = torch.stack([torch.full((2, 4), 10.0), torch.full((2, 4), 3.0), torch.full((2, 4), 10.0)])[None]
    candidates[0, :, :, :1] = 3.0  # the first column: all three agree, not scored
    mask = torch.ones_like(truth, dtype=torch.bool)
    right = torch.zeros(1, 3, 2, 4)
    right[:, 1, :, :2] = 20.0  # the minimum (3 px) where the truth is 3 px
    right[:, 0, :, 2:] = 20.0  # the given one (10 px) where it is 10 px
    wrong = torch.zeros(1, 3, 2, 4, requires_grad=True)
    with torch.no_grad():
        wrong[:, 0] = 20.0  # sure of the given one everywhere: wrong in column 1
    low = hypothesis_loss(HypothesisChoice(1, right, candidates), truth, mask, (4, 8))
    high = hypothesis_loss(HypothesisChoice(1, wrong, candidates), truth, mask, (4, 8))
    assert float(low) < 1e-6 and float(high.detach()) > 3.0  # column 1 of 3 scored columns: ~20 / 3
    high.backward()
    assert float(wrong.grad[0, 1, :, 1].min()) < -0.1  # pushes the minimum up where it is right
    none = hypothesis_loss(HypothesisChoice(1, right, torch.full((1, 3, 2, 4), 5.0)), truth, mask, (4, 8))
    assert float(none) == 0.0
    with pytest.raises(ValueError, match="level 1"):
        hypothesis_loss(HypothesisChoice(1, right, candidates), truth, mask, (8, 8))


def test_selector_learns_to_cross_a_fattened_edge():
    """Two foreground squares (disparity 10) before a background (3), all textured. The disparity
    given to the selector is right on one square and fattened on the other: its value 4 px out into
    the background, beyond what a +-2 px residual search reaches. Near both squares' edges the
    window's minimum differs from the given disparity, so the geometry of the given disparity cannot
    say which to take: only how well each hypothesis matches can. Trained on this scene alone, with
    the images themselves as features, the selector must take the background back and keep the rest;
    with a right view that does not match, it cannot."""
    band, rest = _fattened_edge_errors(matching=True)
    assert band < 1.0 and rest < 0.5  # the background taken back, the rest kept
    band, _ = _fattened_edge_errors(matching=False)
    assert band > 2.0


def _fattened_edge_errors(matching: bool, steps: int = 150, lr: float = 1e-3) -> tuple[float, float]:
    """Mean error (px) after training, on the fattened band and on the other pixels near the edges."""
    torch.manual_seed(0)
    height, width, fg, bg = 48, 144, 10, 3
    right_bg, right_fg = _texture(height, width + bg, 1), _texture(height, width + fg, 2)
    truth = np.full((height, width), float(bg), np.float32)
    truth[14:34, 30:54] = fg
    truth[14:34, 96:120] = fg
    left = np.where(truth[..., None] == fg, right_fg[:, :width], right_bg[:, :width])
    # left(u) = right(u - d): the right view sees the background shifted by bg and the squares by fg
    right = right_bg[:, bg:bg + width].copy()
    for c0, c1 in ((30, 54), (96, 120)):
        right[14:34, c0 - fg:c1 - fg] = right_fg[14:34, c0:c1]
    if not matching:
        right = _texture(height, width, 9)
    given = truth.copy()
    given[:, :72] = cv2.dilate(truth[:, :72], np.ones((9, 9), np.uint8))  # the first square 4 px too wide
    radius = 6
    near = cv2.dilate((truth == fg).astype(np.uint8), np.ones((2 * radius + 3,) * 2, np.uint8)).astype(bool)
    inside = np.arange(width)[None] >= 16  # away from the left border, which the right view does not see
    band = (given != truth) & inside
    rest = near & ~band & inside
    to_t = lambda a: torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None]  # noqa: E731
    left_t, right_t = to_t(left), to_t(right)
    given_t, target = torch.from_numpy(given)[None, None], torch.from_numpy(truth)[None, None]
    def patches(image: torch.Tensor) -> torch.Tensor:  # zero-mean 5x5 patches as features: a usable matching score
        unfolded = torch.nn.functional.unfold(image, 5, padding=2).reshape(1, 75, height, width)
        return unfolded - unfolded.mean(dim=1, keepdim=True)

    left_f, right_f = patches(left_t), patches(right_t)
    selector = HypothesisSelector(feature_channels=75, channels=16, radius=radius)
    run = lambda: selector(given_t, left_f, right_f, left_t, right_t, 16.0)[0]  # noqa: E731
    with torch.no_grad():
        assert float((run() - target).abs()[0, 0][torch.from_numpy(band)].mean()) > 5.0  # starts near the given one
    optimizer = torch.optim.Adam(selector.parameters(), lr=lr)
    for _ in range(steps):
        optimizer.zero_grad()
        (run() - target).abs().mean().backward()
        optimizer.step()
    with torch.no_grad():
        error = (run() - target).abs()[0, 0]
    return float(error[torch.from_numpy(band)].mean()), float(error[torch.from_numpy(rest)].mean())
