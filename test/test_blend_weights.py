"""Weight-space interpolation (WiSE-FT) of a network and its fine-tuned copy."""

from __future__ import annotations

import json

import pytest
import torch

from stereo_depth_ros.core.network.config import NetworkConfig
from stereo_depth_ros.core.network.model import StereoNet
from stereo_depth_ros.core.network.weights import interpolate_states, load_weights, save_weights
from stereo_depth_ros.tools.blend_weights import _fine_tuning_data
from stereo_depth_ros.tools.blend_weights import main as blend

SMALL = NetworkConfig(encoder_channels=(8, 8, 8, 8, 8, 8), decoder_channels=((8, 8, 8),) * 6, refinement_channels=8)


def test_interpolation_is_exact_at_the_ends_and_linear_between():
    torch.manual_seed(0)
    a, b = StereoNet(SMALL).state_dict(), StereoNet(SMALL).state_dict()
    for key in a:
        assert torch.equal(interpolate_states(a, b, 0.0)[key], a[key])
        assert torch.allclose(interpolate_states(a, b, 1.0)[key], b[key])
        assert torch.allclose(interpolate_states(a, b, 0.25)[key], 0.75 * a[key] + 0.25 * b[key], atol=1e-6)
    with pytest.raises(ValueError, match="alpha"):
        interpolate_states(a, b, 1.5)
    with pytest.raises(ValueError, match="keys"):
        interpolate_states(a, {k: v for k, v in list(b.items())[1:]}, 0.5)


def test_tool_writes_the_blend_with_its_provenance(tmp_path, capsys):
    torch.manual_seed(1)
    first, second = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    save_weights(StereoNet(SMALL), first, {"training_command": "a", "data": {"generator": "synthetic"}})
    save_weights(StereoNet(SMALL), second, {"training_command": "b", "steps": 7, "data": {
        "initial": {"generator": "synthetic"}, "fine_tuning": [{"path": "robot.mcap", "frames": 4}]}})
    out = tmp_path / "out.safetensors"
    assert blend([str(first), str(second), "--alpha", "0.5", "--output", str(out)]) == 0
    state, meta = load_weights(out)
    a, b = load_weights(first)[0], load_weights(second)[0]
    key = next(iter(state))
    assert torch.allclose(state[key], (a[key] + b[key]) / 2, atol=1e-6)
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar["alpha"] == 0.5 and sidecar["inputs"]["tuned"]["training_command"] == "b"
    assert len(sidecar["inputs"]["initial"]["sha256"]) == 64 and sidecar["tuned"]["steps"] == 7
    # What the blend has seen: the initial weights' data and the fine-tuning's sources, once each.
    assert sidecar["data"] == {"initial": {"generator": "synthetic"}, "fine_tuning": [{"path": "robot.mcap", "frames": 4}]}
    assert _fine_tuning_data({"sources": [{"path": "old"}]}) == [{"path": "old"}]  # sidecars written before
    assert _fine_tuning_data({"data": {"generator": "synthetic"}}) == {"generator": "synthetic"}  # supervised
    # Bad input: another network, a missing file -> one line, no output.
    other = tmp_path / "other.safetensors"
    save_weights(StereoNet(NetworkConfig(encoder_channels=(8,) * 6, decoder_channels=((8, 8, 8),) * 6,
                                         refinement_channels=16)), other)
    capsys.readouterr()
    for bad in ([str(first), str(other)], [str(first), str(tmp_path / "missing.safetensors")]):
        target = tmp_path / "bad.safetensors"
        assert blend([*bad, "--alpha", "0.5", "--output", str(target)]) == 2
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(err) == 1 and err[0].startswith("[blend] error: ")
        assert not target.exists() and not target.with_suffix(".json").exists()
