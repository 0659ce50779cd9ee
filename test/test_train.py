import json

import pytest
import torch

from stereo_depth_ros.core.network.weights import load_weights
from stereo_depth_ros.tools import train

COMMON = ["--batch-size", "1", "--crop", "64", "128", "--train-samples", "2", "--val-samples", "1",
          "--width", "160", "--height", "96", "--workers", "1", "--val-every", "2", "--warmup", "1"]


def test_training_writes_weights_and_resume_repeats_the_same_run(tmp_path):
    straight = tmp_path / "straight"
    assert train.main(COMMON + ["--steps", "4", "--output", str(straight / "w.safetensors"),
                                "--checkpoint", str(straight / "c.safetensors")]) == 0
    resumed = tmp_path / "resumed"
    args = ["--output", str(resumed / "w.safetensors"), "--checkpoint", str(resumed / "c.safetensors")]
    assert train.main(COMMON + ["--steps", "2", "--checkpoint-every", "2"] + args) == 0
    assert train.main(COMMON + ["--steps", "4", "--resume"] + args) == 0

    a, meta = load_weights(straight / "w.safetensors")
    b, _ = load_weights(resumed / "w.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    sidecar = json.loads((straight / "w.json").read_text())
    assert sidecar["steps"] == 4 and sidecar["data"]["domain"] == "indoor"
    assert "tools.train" in sidecar["training_command"] and "--steps 4" in sidecar["training_command"]
    assert set(sidecar["validation"]) == {"epe", "bad1", "bad3"} and len(sidecar["validation_history"]) == 2
    assert meta["steps"] == 4
    # The resumed run's sidecar names both stages and keeps the first stage's validation.
    resumed_sidecar = json.loads((resumed / "w.json").read_text())
    first, second = resumed_sidecar["stages"]
    assert (first["from_step"], first["to_step"], second["from_step"], second["to_step"]) == (0, 2, 2, 4)
    assert "--resume" not in first["command"] and "--resume" in second["command"]
    assert [h["step"] for h in resumed_sidecar["validation_history"]] == [2, 4]
    for got, want in zip(resumed_sidecar["validation_history"], sidecar["validation_history"]):
        assert got == pytest.approx(want)
    assert [(s["from_step"], s["to_step"]) for s in sidecar["stages"]] == [(0, 4)]


def test_batches_are_deterministic_and_mirroring_keeps_geometry():
    data = train.generate_dataset([0, 1], 160, 96, "indoor", 1, "test")
    a = train.make_batch(data, 7, 0, 4, (64, 128), torch.device("cpu"))
    b = train.make_batch(data, 7, 0, 4, (64, 128), torch.device("cpu"))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    left, right, gt = a
    assert left.shape == right.shape == (4, 3, 64, 128) and gt.shape == (4, 1, 64, 128)
    assert 0 <= left.min() and left.max() <= 1 and (gt > 0).all()


def test_scale_augmentation_shrinks_the_scene_and_keeps_the_geometry():
    """A fronto-parallel plane 24 px away in disparity: shrunk by half, the batch's ground truth is
    12 px and the images themselves are best aligned by a 12 px shift."""
    d, height, width = 24, 96, 192
    g = torch.Generator().manual_seed(0)
    texture = torch.nn.functional.avg_pool2d(torch.rand(1, 3, height, width + d, generator=g), 5, 1, 2)[0]
    texture = ((texture - texture.min()) / (texture.max() - texture.min()) * 255).round().to(torch.uint8)
    left, right = texture[..., :width], texture[..., d:d + width]  # right(u - d) = left(u)
    disparity = torch.full((1, 1, height, width), float(d), dtype=torch.float16)
    data = train.Dataset(left[None].clone(), right[None].clone(), disparity, disparity.clone())
    plain = train.make_batch(data, 3, 0, 4, (48, 96), torch.device("cpu"))
    assert all(torch.equal(x, y) for x, y in zip(plain, train.make_batch(data, 3, 0, 4, (48, 96), torch.device("cpu"),
                                                                           (1.0, 1.0))))
    for batch, expected in ((plain, d), (train.make_batch(data, 3, 0, 4, (48, 96), torch.device("cpu"), (0.5, 0.5)), d // 2)):
        l, r, gt = batch
        assert l.shape == r.shape == (4, 3, 48, 96) and torch.allclose(gt, torch.tensor(float(expected)))
        # The shift that best aligns the views (mean absolute difference over the overlap).
        costs = [float((l[..., s:] - r[..., : 96 - s]).abs().mean()) for s in range(0, 40)]
        assert costs.index(min(costs)) == expected
    with pytest.raises(ValueError, match="scale_range"):
        train.make_batch(data, 3, 0, 4, (48, 96), torch.device("cpu"), (0.0, 1.0))


def test_fine_tuning_records_the_whole_chain_of_runs(tmp_path):
    first, second = tmp_path / "first.safetensors", tmp_path / "second.safetensors"
    assert train.main(COMMON + ["--steps", "2", "--output", str(first), "--checkpoint", str(tmp_path / "c1.safetensors")]) == 0
    assert train.main(COMMON + ["--steps", "2", "--init-weights", str(first), "--output", str(second),
                                "--checkpoint", str(tmp_path / "c2.safetensors")]) == 0
    third = tmp_path / "third.safetensors"
    assert train.main(COMMON + ["--steps", "2", "--init-weights", str(second), "--output", str(third),
                                "--checkpoint", str(tmp_path / "c3.safetensors")]) == 0
    _, meta = load_weights(third)
    chain = meta["initialised_from"]
    assert chain["path"] == str(second) and chain["steps"] == 2 and chain["device"] == "cpu"
    assert chain["initialised_from"]["path"] == str(first) and chain["initialised_from"]["initialised_from"] is None
    assert "--init-weights" not in chain["initialised_from"]["training_command"]


def test_near_samples_move_the_camera_closer():
    data = train.generate_dataset([0, 1], 160, 96, "indoor", 1, "test", [30.0, None])
    near, default = data.disp_left[0].float(), data.disp_left[1].float()
    assert near.min() >= 30.0 - 1e-2 and near.max() <= 40.0 + 1e-2  # the domain's 160 px at 640 -> 40 at 160
    assert default.min() < 30.0
    plain = train.generate_dataset([1], 160, 96, "indoor", 1, "test")
    assert torch.equal(plain.disp_left[0], data.disp_left[1])  # None keeps the domain's range
    with pytest.raises(ValueError, match="one entry per seed"):
        train.generate_dataset([0, 1], 160, 96, "indoor", 1, "test", [30.0])


def test_a_domain_mix_alternates_its_domains():
    """``objects,indoor``: even samples are the objects generator's, odd ones the planar indoor
    domain's, each identical to a single-domain run with the same seed."""
    mixed = train.generate_dataset([3, 4, 5], 160, 96, "objects,indoor", 1, "test")
    for k, (seed, domain) in enumerate([(3, "objects"), (4, "indoor"), (5, "objects")]):
        alone = train.generate_dataset([seed], 160, 96, domain, 1, "test")
        assert torch.equal(alone.left[0], mixed.left[k]) and torch.equal(alone.disp_left[0], mixed.disp_left[k])
    assert not torch.equal(train.generate_dataset([4], 160, 96, "objects", 1, "test").left[0], mixed.left[1])
    for bad in ("objects,moon", "objects,"):
        with pytest.raises(SystemExit):
            train.parse_args(["--domain", bad])


def test_near_fraction_is_recorded_and_checked(tmp_path):
    out = tmp_path / "w.safetensors"
    assert train.main(COMMON + ["--steps", "1", "--near-fraction", "0.5", "--near-min-disparity", "96",
                                "--output", str(out), "--checkpoint", str(tmp_path / "c.safetensors")]) == 0
    data = json.loads(out.with_suffix(".json").read_text())["data"]
    assert data["near_fraction"] == 0.5 and data["near_min_disparity"] == 96.0
    for bad in (["--near-fraction", "1.5"], ["--near-fraction", "0.5", "--near-min-disparity", "200"], ["--domain", "moon"]):
        with pytest.raises(SystemExit):
            train.parse_args(bad)


def test_default_checkpoints_of_runs_with_different_outputs_do_not_collide():
    a = train.parse_args(["--output", "runs/a.safetensors"])
    b = train.parse_args(["--output", "other/b.safetensors"])
    assert a.checkpoint.name == "a_checkpoint.safetensors" and b.checkpoint.name == "b_checkpoint.safetensors"
    assert train.parse_args(["--checkpoint", "c.safetensors"]).checkpoint.name == "c.safetensors"


def test_edge_weight_changes_the_training_and_is_recorded_and_checked(tmp_path):
    runs = {}
    for name, extra in (("plain", []), ("edges", ["--edge-weight", "4", "--edge-radius", "8"])):
        out = tmp_path / name / "w.safetensors"
        assert train.main(COMMON + ["--steps", "2", "--output", str(out),
                                    "--checkpoint", str(tmp_path / name / "c.safetensors")] + extra) == 0
        runs[name] = (load_weights(out)[0], json.loads(out.with_suffix(".json").read_text()))
    (plain, plain_meta), (edges, edges_meta) = runs["plain"], runs["edges"]
    assert any(not torch.equal(plain[k], edges[k]) for k in plain)  # the same batches, another loss
    assert plain_meta["edge_weight"] == {"weight": 1.0, "radius_px": 16}
    assert edges_meta["edge_weight"] == {"weight": 4.0, "radius_px": 8}
    for bad in (["--edge-weight", "0.5"], ["--edge-radius", "-2"]):
        with pytest.raises(SystemExit):
            train.parse_args(bad)


def test_architecture_choice_is_trained_recorded_resumed_and_checked(tmp_path):
    from stereo_depth_ros.core.network import CostVolumeNet
    from stereo_depth_ros.core.network.weights import load_model

    out, checkpoint = tmp_path / "cv.safetensors", tmp_path / "c.safetensors"
    args = ["--architecture", "costvolume", "--network-config", '{"groups": 4}', "--checkpoint", str(checkpoint)]
    assert train.main(COMMON + ["--steps", "2", "--checkpoint-every", "2", "--output", str(out)] + args) == 0
    config = json.loads(out.with_suffix(".json").read_text())["config"]
    assert config["architecture"] == "costvolume" and config["groups"] == 4
    model, _ = load_model(out)
    assert isinstance(model, CostVolumeNet) and model.config.groups == 4
    # --resume rebuilds the checkpoint's network without being told, and refuses another one.
    resumed = tmp_path / "resumed.safetensors"
    assert train.main(COMMON + ["--steps", "3", "--resume", "--checkpoint", str(checkpoint), "--output", str(resumed)]) == 0
    state, meta = load_weights(resumed)
    assert meta["config"] == config and meta["steps"] == 3 and state.keys() == model.state_dict().keys()
    assert train.main(COMMON + ["--steps", "4", "--resume", "--checkpoint", str(checkpoint), "--output", str(resumed),
                                "--architecture", "madnet"]) == 2
    for bad in (["--architecture", "psmnet"], ["--network-config", "groups=4"], ["--network-config", "[4]"],
                ["--architecture", "costvolume", "--network-config", '{"groups": 7}'],
                ["--architecture", "madnet", "--network-config", '{"architecture": "costvolume"}'],
                ["--architecture", "costvolume", "--init-weights", str(out)],
                ["--architecture", "costvolume", "--unlabeled", "motorcycle"]):
        with pytest.raises(SystemExit):
            train.parse_args(bad)


def test_init_weights_with_a_stage_added_keeps_every_weight(tmp_path):
    """--init-weights W --network-config '{"context_level": 2}': W's network with a context stage,
    every weight of W in place and the new stage starting as the identity."""
    from stereo_depth_ros.core.network.weights import load_model

    base = tmp_path / "base.safetensors"
    assert train.main(COMMON + ["--steps", "1", "--architecture", "costvolume", "--output", str(base),
                                "--checkpoint", str(tmp_path / "c0.safetensors")]) == 0
    args = train.parse_args(COMMON + ["--init-weights", str(base), "--network-config", '{"context_level": 2}'])
    model, _ = train.build_model(args, torch.device("cpu"))
    old, _ = load_model(base)
    assert model.config.context_level == 2 and model.context is not None
    old_state = old.state_dict()
    assert all(torch.equal(value, old_state[key]) for key, value in model.state_dict().items() if key in old_state)
    assert {key.split(".")[0] for key in model.state_dict().keys() - old_state.keys()} == {"context"}
    left = torch.rand(1, 3, 64, 128)
    right = torch.roll(left, -4, dims=-1)
    with torch.no_grad():
        assert torch.equal(model.eval()(left, right).disparity, old.eval()(left, right).disparity)
    # Trained, recorded in the sidecar, and loadable as it is.
    out = tmp_path / "ctx.safetensors"
    assert train.main(COMMON + ["--steps", "2", "--init-weights", str(base), "--network-config", '{"context_level": 2}',
                                "--output", str(out), "--checkpoint", str(tmp_path / "c1.safetensors")]) == 0
    trained, meta = load_model(out)
    assert meta["config"]["context_level"] == 2 and trained.context is not None
    assert any(p.abs().sum() > 0 for p in trained.context.head.parameters())  # the stage learnt something
    # Changes the weights do not fit, or a change of architecture, end the command before any data.
    for bad in ('{"groups": 4}', '{"architecture": "madnet"}', '{"context_level": 5}'):
        with pytest.raises(SystemExit):
            train.parse_args(COMMON + ["--init-weights", str(base), "--network-config", bad])


def test_init_weights_with_a_hypothesis_selector_trains_it_on_its_choice(tmp_path):
    """--network-config '{"hypothesis_level": 2}' on trained weights: the selector is added, trained
    (the cross-entropy on its choice reaches it) and recorded in the sidecar."""
    from stereo_depth_ros.core.network.hypotheses import HypothesisSelector
    from stereo_depth_ros.core.network.weights import load_model

    base = tmp_path / "base.safetensors"
    assert train.main(COMMON + ["--steps", "1", "--architecture", "costvolume", "--output", str(base),
                                "--checkpoint", str(tmp_path / "c0.safetensors")]) == 0
    out = tmp_path / "hyp.safetensors"
    assert train.main(COMMON + ["--steps", "2", "--init-weights", str(base), "--network-config", '{"hypothesis_level": 2}',
                                "--output", str(out), "--checkpoint", str(tmp_path / "c1.safetensors")]) == 0
    trained, meta = load_model(out)
    assert meta["config"]["hypothesis_level"] == 2 and isinstance(trained.hypotheses, HypothesisSelector)
    fresh = HypothesisSelector(trained.config.feature_channels[1], trained.config.hypothesis_channels,
                               trained.config.hypothesis_radius)
    assert not torch.equal(trained.hypotheses.head.bias, fresh.head.bias)  # moved from its initial choice
