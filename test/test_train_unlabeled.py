"""Fine-tuning on unlabeled recordings: the robot workflow at toy size, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from stereo_depth_ros.core.unlabeled import load_pair_folder, make_unlabeled_batch, prepare_unlabeled_set
from stereo_depth_ros.core.sgbm import SgbmBackend
from stereo_depth_ros.tools.make_bag import main as make_bag
from stereo_depth_ros.tools.train import main as train

TOY = ["--steps", "2", "--batch-size", "2", "--crop", "64", "96", "--val-every", "2", "--checkpoint-every", "2",
       "--workers", "1", "--lr", "1e-5"]


def write_pairs(folder: Path, count: int = 3, size: tuple[int, int] = (96, 128), shift: int = 4,
                calib: bool = True) -> Path:
    """Textured pairs at a constant disparity (right(x - d) = left(x)) with a calib.json."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    height, width = size
    for k in range(count):
        texture = cv2.GaussianBlur(rng.integers(0, 255, (height, width + shift, 3), dtype=np.uint8), (3, 3), 0.8)
        cv2.imwrite(str(folder / f"left_{k:03d}.png"), texture[:, :width])
        cv2.imwrite(str(folder / f"right_{k:03d}.png"), texture[:, shift:])
    if calib:
        (folder / "calib.json").write_text(json.dumps({"fx": 100.0, "cx": width / 2, "cy": height / 2, "baseline_m": 0.1}))
        (folder / "timestamps.txt").write_text("\n".join(str(1_000_000_000 + 50_000_000 * k) for k in range(count)))
    return folder


def test_pairs_labels_and_batches(tmp_path):
    frames = load_pair_folder(write_pairs(tmp_path / "pairs"))
    assert [f.name for f in frames] == ["pairs/left_000.png", "pairs/left_001.png", "pairs/left_002.png"]
    data = prepare_unlabeled_set(frames, SgbmBackend(max_disparity=32))
    pair, mirrored = data.labels[0]
    # The pair is a plane at 4 px; its mirror too (the flipped right view is the left one).
    for labels in (pair, mirrored):
        assert labels.density > 0.7
        confident = labels.disparity[labels.valid].numpy()
        assert np.mean(np.abs(confident - 4.0) <= 1.0) > 0.99
    import torch

    left, right, labels = make_unlabeled_batch(data, 3, 0, 4, (64, 96), torch.device("cpu"))
    assert left.shape == right.shape == (4, 3, 64, 96) and labels.disparity.shape == (4, 1, 64, 96)
    assert 0 <= float(left.min()) and float(left.max()) <= 1
    again = make_unlabeled_batch(data, 3, 0, 4, (64, 96), torch.device("cpu"))
    assert torch.equal(again[0], left)  # deterministic per step


def test_pairs_named_by_suffix(tmp_path):
    """``piano_left.png`` pairs with ``piano_right.png`` (the layout of collected pairs); a missing
    partner is named."""
    folder = write_pairs(tmp_path / "prefixed", calib=False)
    suffixed = tmp_path / "suffixed"
    suffixed.mkdir()
    for k, name in enumerate(["piano", "bicycle"]):
        for side in ("left", "right"):
            (folder / f"{side}_{k:03d}.png").rename(suffixed / f"{name}_{side}.png")
    frames = load_pair_folder(suffixed)
    assert [f.name for f in frames] == ["suffixed/bicycle_left.png", "suffixed/piano_left.png"]
    data = prepare_unlabeled_set(frames[:1], SgbmBackend(max_disparity=32))
    confident = data.labels[0][0].disparity[data.labels[0][0].valid].numpy()
    assert np.mean(np.abs(confident - 4.0) <= 1.0) > 0.99  # left and right were paired the right way round
    (suffixed / "piano_right.png").unlink()
    with pytest.raises(ValueError, match="piano_right.png"):
        load_pair_folder(suffixed)


def test_robot_workflow_bag_to_weights_to_node(tmp_path):
    """Record (here: a bag written from a folder of frames), fine-tune on it, run the node with the result."""
    bag = tmp_path / "robot_bag"
    assert make_bag([str(bag), "--from-frames", str(write_pairs(tmp_path / "frames", count=4))]) == 0
    weights = tmp_path / "robot.safetensors"
    assert train(["--unlabeled", str(bag), "--output", str(weights), "--checkpoint", str(tmp_path / "ck.safetensors"),
                  "--synthetic-fraction", "0", *TOY]) == 0
    meta = json.loads(weights.with_suffix(".json").read_text())
    sources = meta["data"]["fine_tuning"]  # what the weights have seen
    assert meta["steps"] == 2 and sources[0]["kind"] == "rosbag2" and sources[0]["frames"] == 4
    assert len(sources[0]["sha256"]) == 64 and meta["frames"]["held_out"]  # a frame held out for validation
    assert 0 < meta["validation"]["proxy_agreement"] <= 1 and meta["step_seconds_median"] > 0
    assert "initial" in meta["data"] and "sources" not in meta  # listed once

    import yaml

    from stereo_depth_ros.tools.replay import main as replay

    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"/**": {"ros__parameters": {
        "device": "cpu", "sensor_qos": "reliable", "weights": str(weights), "adaptation": {"enabled": False}}}}))
    out = tmp_path / "replay"
    assert replay([str(bag), "--mode", "replay", "--output", str(out), "--params-file", str(params), "--lockstep",
                   "--weights", str(weights)]) == 0
    report = json.loads((out / "metrics.json").read_text())
    assert report["frames_published"] == 4 and report["node_returncode"] == 0
    assert "robot.safetensors" in (out / "node.log").read_text()


@pytest.mark.parametrize("problem", ["no_topics", "sizes", "empty", "corrupt", "missing_right"])
def test_bad_input_ends_with_one_line_and_no_weights(tmp_path, capsys, problem):
    source = tmp_path / "source"
    if problem == "no_topics":
        assert make_bag([str(source), "--frames", "2", "--size", "64x48", "--namespace", "/other"]) == 0
    elif problem == "sizes":
        write_pairs(source, count=2)
        small = np.zeros((40, 60, 3), np.uint8)
        cv2.imwrite(str(source / "right_001.png"), small)
    elif problem == "empty":
        source.mkdir()
    elif problem == "corrupt":
        write_pairs(source, count=2)
        (source / "left_001.png").write_bytes(b"not a png")
    elif problem == "missing_right":
        write_pairs(source, count=2)
        (source / "right_001.png").unlink()
    weights = tmp_path / "w.safetensors"
    capsys.readouterr()
    assert train(["--unlabeled", str(source), "--output", str(weights), "--checkpoint", str(tmp_path / "ck.safetensors"),
                  *TOY]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("[train] error: "), err
    expected = {"no_topics": "lacks topic(s)", "sizes": "expected left and right of one size",
                "empty": "expected a rosbag2, a dataset folder", "corrupt": "expected a readable image file",
                "missing_right": "right_001.png (the pair of left_001.png)"}[problem]
    assert expected in err[0]
    assert not list(tmp_path.glob("w*")) and not list(tmp_path.glob("ck*"))


def test_joint_synthetic_batches_and_anchor(tmp_path):
    """Half of every batch synthetic (one step, both losses), the synthetic EPE tracked, and an anchor
    that holds the weights next to the initial ones."""
    import torch

    from stereo_depth_ros.core.network.weights import DEFAULT_WEIGHTS, load_model

    frames = write_pairs(tmp_path / "frames", count=3)
    common = ["--unlabeled", str(frames), "--synthetic-fraction", "0.5", "--synthetic-mix", "batch",
              "--train-samples", "2", "--synthetic-val-samples", "1", "--width", "128", "--height", "96",
              "--checkpoint", str(tmp_path / "ck.safetensors"), *TOY]
    common[common.index("--lr") + 1] = "1e-3"
    initial, _ = load_model(DEFAULT_WEIGHTS, "cpu")

    def distance(weights: Path) -> float:
        model, _ = load_model(weights, "cpu")
        with torch.no_grad():
            return sum(float((p - q).abs().sum()) for p, q in zip(model.parameters(), initial.parameters()))

    free, held = tmp_path / "free.safetensors", tmp_path / "held.safetensors"
    assert train([*common, "--output", str(free)]) == 0
    assert train([*common, "--output", str(held), "--anchor", "0.9"]) == 0
    meta = json.loads(free.with_suffix(".json").read_text())
    assert meta["synthetic"]["mix"] == "batch" and meta["anchor"] == 0.0
    assert all(np.isfinite(v["synthetic_epe"]) for v in meta["validation_history"])
    assert 0 < distance(held) < 0.5 * distance(free)


@pytest.mark.parametrize("batch_size, fraction", [(2, 0.25), (4, 0.5), (8, 0.25), (3, 0.7), (4, 0.0)])
def test_synthetic_share_of_batches_adds_up(batch_size, fraction):
    from stereo_depth_ros.tools.train_unlabeled import _synthetic_in_batch

    counts = [_synthetic_in_batch(k, batch_size, fraction) for k in range(400)]
    assert all(0 <= c <= batch_size for c in counts)
    assert sum(counts) == pytest.approx(400 * batch_size * fraction, abs=1)


def test_distillation_targets_the_initial_network_on_synthetic_crops(tmp_path):
    """With a teacher, the synthetic loss measures the distance to the initial network's own final
    disparity (zero while the weights have not moved), not to the ground truth."""
    import copy

    import torch

    from stereo_depth_ros.core.network.weights import DEFAULT_WEIGHTS, load_model
    from stereo_depth_ros.core.synthetic import generate_sample, split_seeds
    from stereo_depth_ros.tools.train_unlabeled import synthetic_loss

    model, _ = load_model(DEFAULT_WEIGHTS, "cpu")
    model.train()
    teacher = copy.deepcopy(model).eval().requires_grad_(False)
    s = generate_sample(split_seeds("val", 1)[0], width=128, height=96, domain="indoor")
    left, right = (torch.from_numpy(im).permute(2, 0, 1)[None].float().div(255) for im in (s.left, s.right))
    gt = torch.from_numpy(s.disparity_left)[None, None].float()
    max_disp = float(model.config.max_disparity)
    _, distilled = synthetic_loss(model(left, right), left, right, gt, teacher, max_disp)
    _, supervised = synthetic_loss(model(left, right), left, right, gt, None, max_disp)
    assert distilled["final"] == pytest.approx(0.0, abs=1e-5) and supervised["final"] > 0.05
    with torch.no_grad():  # once the student moves, the teacher pulls it back
        next(model.parameters()).add_(0.05)
    _, moved = synthetic_loss(model(left, right), left, right, gt, teacher, max_disp)
    assert moved["final"] > 1e-3

    frames = write_pairs(tmp_path / "frames", count=3)
    out = tmp_path / "w.safetensors"
    assert train(["--unlabeled", str(frames), "--synthetic-fraction", "0.5", "--synthetic-target", "teacher",
                  "--train-samples", "2", "--synthetic-val-samples", "0", "--width", "128", "--height", "96",
                  "--checkpoint", str(tmp_path / "ck.safetensors"), "--output", str(out), *TOY]) == 0
    assert json.loads(out.with_suffix(".json").read_text())["synthetic"]["target"] == "teacher"


def test_a_resumed_run_records_every_stage(tmp_path):
    """``--resume`` continues from the checkpoint's step, and the sidecar lists both runs' commands
    and step ranges (its training_command alone would name only the last stage)."""
    frames = write_pairs(tmp_path / "frames", count=3)
    out, ckpt = tmp_path / "w.safetensors", tmp_path / "ck.safetensors"
    base = ["--unlabeled", str(frames), "--synthetic-fraction", "0", "--checkpoint", str(ckpt), "--output", str(out),
            "--batch-size", "2", "--crop", "64", "96", "--val-every", "2", "--checkpoint-every", "2"]
    assert train([*base, "--steps", "2"]) == 0
    assert train([*base, "--steps", "4", "--resume"]) == 0
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["steps"] == 4 and "--resume" in meta["training_command"]
    first, second = meta["stages"]
    assert (first["from_step"], first["to_step"], second["from_step"], second["to_step"]) == (0, 2, 2, 4)
    assert "--resume" not in first["command"] and "--resume" in second["command"]


def test_synthetic_loss_weighs_the_depth_edges_with_ground_truth_and_not_with_a_teacher():
    import torch

    from stereo_depth_ros.core.network.model import StereoOutput
    from stereo_depth_ros.tools.train_unlabeled import synthetic_loss

    gt = torch.full((1, 1, 16, 24), 10.0)
    gt[..., 12:] = 30.0  # one depth edge between columns 11 and 12
    prediction = gt + 3.0
    prediction[..., 9:15] = gt[..., 9:15] + 0.5  # small errors in the band, large ones elsewhere
    output = StereoOutput(disparity=prediction, levels={}, padded_size=(16, 24))
    images = torch.zeros(1, 3, 16, 24)
    plain, _ = synthetic_loss(output, images, images, gt, None, 192.0)
    weighted, _ = synthetic_loss(output, images, images, gt, None, 192.0, (2, 4.0))
    assert float(weighted) < float(plain)  # the band's small errors weigh 4x

    class Teacher(torch.nn.Module):
        def forward(self, left, right):
            return StereoOutput(disparity=gt, levels={}, padded_size=(16, 24))

    with_teacher, _ = synthetic_loss(output, images, images, torch.zeros_like(gt), Teacher(), 192.0, (2, 4.0))
    assert float(with_teacher) == pytest.approx(float(plain))  # distillation keeps uniform weights


def test_a_teacher_labels_every_frame_and_its_mirror_and_is_cropped_with_them(tmp_path):
    """The teacher's disparity becomes each label's reference (the photometric gate's second
    hypothesis), for the pair and its mirror, and travels with every crop, flip and upscale."""
    import torch

    frames = load_pair_folder(write_pairs(tmp_path / "pairs", count=2, size=(48, 80)))
    calls = []

    def teacher(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        # the column index, + 100 for the mirrored pair (every second call): which view and which
        # pixels a crop holds
        calls.append(tuple(left.shape))
        x = torch.arange(left.shape[-1], dtype=torch.float32).expand(1, 1, *left.shape[-2:])
        return x + 100.0 * (len(calls) % 2 == 0)

    data = prepare_unlabeled_set(frames, SgbmBackend(max_disparity=32), teacher=teacher)
    assert calls == [(1, 3, 48, 80)] * 4  # pair and mirror of each frame
    for pair, mirrored in data.labels:
        assert float(pair.reference.max()) == 79 and float(mirrored.reference.min()) == 100
    crop = (64, 96)  # larger than the frames: scaled up by 96 / 80 = 1.2, disparities with it
    left, right, labels = make_unlabeled_batch(data, 5, 0, 6, crop, torch.device("cpu"))
    assert labels.reference is not None and labels.reference.shape == (6, 1, 64, 96)
    span = labels.reference.amax(dim=(1, 2, 3)) - labels.reference.amin(dim=(1, 2, 3))
    assert torch.allclose(span, torch.full((6,), 79 * 1.2), atol=2.0)  # the ramp, stretched by the upscale
    assert {int(v) >= 100 for v in labels.reference.amin(dim=(1, 2, 3))} == {True, False}  # both views drawn
    plain = prepare_unlabeled_set(frames, SgbmBackend(max_disparity=32))
    assert make_unlabeled_batch(plain, 5, 0, 6, crop, torch.device("cpu"))[2].reference is None


def test_teacher_scale_fine_tuning_records_it_and_gates_with_the_upsampled_network(tmp_path):
    frames = write_pairs(tmp_path / "frames", count=3)
    out = tmp_path / "w.safetensors"
    assert train(["--unlabeled", str(frames), "--synthetic-fraction", "0", "--teacher-scale", "1.25",
                  "--checkpoint", str(tmp_path / "ck.safetensors"), "--output", str(out), *TOY]) == 0
    assert json.loads(out.with_suffix(".json").read_text())["teacher_scale"] == 1.25
    assert "inference_scale" not in json.loads(out.with_suffix(".json").read_text())  # fine-tuned at 1
    with pytest.raises(SystemExit):
        train(["--unlabeled", str(frames), "--teacher-scale", "3", "--output", str(tmp_path / "x.safetensors"), *TOY])
    assert not (tmp_path / "x.safetensors").exists()


def test_frame_scale_resizes_pairs_and_their_disparities_with_them(tmp_path):
    """``scale_frame`` resizes both views as the node's ``inference_scale`` does, so the proxy labels
    of a 4 px plane become a 6 px plane at 1.5x; 1 is the frame itself; a scale out of range is named."""
    from stereo_depth_ros.core.unlabeled import scale_frame

    frame = load_pair_folder(write_pairs(tmp_path / "pairs", count=1, size=(96, 128)))[0]
    assert scale_frame(frame, 1.0) is frame
    big = scale_frame(frame, 1.5)
    assert big.left.shape == big.right.shape == (144, 192, 3) and big.left.dtype == np.uint8
    assert big.name == "pairs/left_000.png@x1.5"
    labels, _ = prepare_unlabeled_set([big], SgbmBackend(max_disparity=32)).labels[0]
    confident = labels.disparity[labels.valid].numpy()
    assert labels.density > 0.7 and np.median(confident) == pytest.approx(6.0, abs=0.25)
    with pytest.raises(ValueError, match="scale"):
        scale_frame(frame, 2.5)


def test_frame_scale_fine_tuning_records_it_and_refuses_bad_factors(tmp_path):
    frames = write_pairs(tmp_path / "frames", count=3)
    out = tmp_path / "w.safetensors"
    assert train(["--unlabeled", str(frames), "--synthetic-fraction", "0", "--frame-scale", "1.25",
                  "--checkpoint", str(tmp_path / "ck.safetensors"), "--output", str(out), *TOY]) == 0
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["frame_scale"] == 1.25
    from stereo_depth_ros.core.network.weights import load_weights
    from stereo_depth_ros.core.pipeline import weights_inference_scale

    # the weights ask the node and the tools to run them at the scale they were fine-tuned at
    assert weights_inference_scale(load_weights(out)[1]) == 1.25
    assert all(name.endswith("@x1.25") for name in meta["frames"]["train"] + meta["frames"]["held_out"])
    for bad in ("0", "3"):
        with pytest.raises(SystemExit):
            train(["--unlabeled", str(frames), "--frame-scale", bad, "--output", str(tmp_path / "x.safetensors"), *TOY])
    assert not (tmp_path / "x.safetensors").exists()
