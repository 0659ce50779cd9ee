import logging
import math
import os
import time
from dataclasses import replace

import numpy as np
import pytest
import torch

from stereo_depth_ros.core.adaptation import AdaptationConfig, AdaptationWorker, OnlineAdapter, load_adapted_or_default
from stereo_depth_ros.core.network.estimator import image_to_tensor
from stereo_depth_ros.core.network.weights import load_model
from stereo_depth_ros.core.synthetic import generate_sequence

H, W = 96, 160


@pytest.fixture(scope="module")
def frames():
    return [(image_to_tensor(f.left), image_to_tensor(f.right), f.disparity_left)
            for f in generate_sequence(3, 16, W, H, "indoor")]


def fresh(config: AdaptationConfig) -> OnlineAdapter:
    model, _ = load_model(None)
    return OnlineAdapter(model, config)


def params_of(model):
    return {k: v.detach().clone() for k, v in model.named_parameters()}


def changed(before, model):
    return {k for k, v in model.named_parameters() if not torch.equal(before[k], v.detach())}


def test_config_rejects_bad_values():
    for kwargs, message in [(dict(mode="half"), "mode"), (dict(learning_rate=0), "learning_rate"),
                            (dict(adapt_every=0), "adapt_every"), (dict(jump_factor=1.0), "jump_factor"),
                            (dict(min_valid_fraction=1.5), "min_valid_fraction"), (dict(optimizer="lbfgs"), "optimizer"),
                            (dict(anchor=1.0), "anchor"), (dict(anchor=-0.1), "anchor")]:
        with pytest.raises(ValueError, match=message):
            AdaptationConfig(**kwargs)


def test_anchor_pulls_each_update_back_towards_the_initial_weights(frames):
    """One step with anchor a moves every weight exactly (1 - a) as far as the same step without."""
    free = fresh(AdaptationConfig(mode="full", learning_rate=1e-4, lr_warmup_steps=1, anchor=0.0))
    anchored = fresh(AdaptationConfig(mode="full", learning_rate=1e-4, lr_warmup_steps=1, anchor=0.25))
    start = params_of(free.model)
    assert free.step(*frames[0][:2]).status == anchored.step(*frames[0][:2]).status == "adapted"
    for name, p in anchored.model.named_parameters():
        free_move = dict(free.model.named_parameters())[name].detach() - start[name]
        # Both moves are differences of float32 weights: a weight of magnitude m resolves m x eps.
        resolution = 4 * torch.finfo(torch.float32).eps * float(start[name].abs().max())
        torch.testing.assert_close(p.detach() - start[name], 0.75 * free_move, rtol=1e-3, atol=1e-8 + resolution)


def test_none_mode_and_adapt_every(frames):
    adapter = fresh(AdaptationConfig(mode="none"))
    before = params_of(adapter.model)
    assert adapter.step(*frames[0][:2]).status == "disabled" and not changed(before, adapter.model)
    adapter = fresh(AdaptationConfig(mode="full", adapt_every=2, learning_rate=1e-5))
    statuses = [adapter.step(*f[:2]).status for f in frames[:4]]
    assert statuses == ["adapted", "not_due", "adapted", "not_due"] and adapter.steps == 2


def test_full_updates_everything_and_mad_one_block(frames):
    adapter = fresh(AdaptationConfig(mode="full", learning_rate=1e-5, proxy="none"))
    before = params_of(adapter.model)
    result = adapter.step(*frames[0][:2])
    assert result.status == "adapted" and result.block == "all" and math.isfinite(result.loss)
    assert set(result.terms) == {"photometric", "smoothness"} and 0 < result.valid_fraction <= 1
    assert len(changed(before, adapter.model)) == len(before)

    # A step large enough to move every weight of the block in float32 (the cost-volume network's
    # correlation gain is about 10: a warming-up 1e-5 step is below its resolution).
    adapter = fresh(AdaptationConfig(mode="mad", learning_rate=1e-4, lr_warmup_steps=1))
    for left, right, _ in frames[:3]:
        before = params_of(adapter.model)
        result = adapter.step(left, right)
        block_names = {n for n, p in adapter.model.named_parameters()
                       if any(p is q for q in adapter.model.block_parameters(result.block))}
        assert result.status == "adapted" and changed(before, adapter.model) == block_names
    assert all(math.isfinite(v) for v in adapter.stats()["block_rewards"].values())


def test_census_image_loss(frames):
    adapter = fresh(AdaptationConfig(mode="full", learning_rate=1e-5, image_loss="census"))
    result = adapter.step(*frames[0][:2])
    assert result.status == "adapted" and 0 < result.terms["photometric"] < 1


def test_multiscale_term(frames):
    adapter = fresh(AdaptationConfig(mode="full", learning_rate=1e-5, multiscale=True))
    result = adapter.step(*frames[0][:2])
    assert result.status == "adapted" and result.terms["photometric_multiscale"] > 0


def test_learning_rate_warms_up(frames):
    adapter = fresh(AdaptationConfig(mode="full", learning_rate=1e-5, lr_warmup_steps=4))
    rates = []
    for left, right, _ in frames[:5]:
        adapter.step(left, right)
        rates.append(adapter._optimizer.param_groups[0]["lr"])
    assert rates == pytest.approx([2.5e-6, 5e-6, 7.5e-6, 1e-5, 1e-5])


def test_runaway_disparity_is_caught_by_the_drift_guard(frames):
    """A prediction that runs out of view trips the guard even when the loss looks fine."""
    adapter = fresh(AdaptationConfig(mode="full", learning_rate=1e-6, patience=2))
    adapter.step(*frames[0][:2])
    with torch.no_grad():  # sabotage: the last decoder now adds +60 px everywhere
        adapter.model.decoders["level1"].head.bias += 30.0
    statuses = [adapter.step(*f[:2]).status for f in frames[1:4]]
    assert "rolled_back" in statuses
    assert adapter.model.decoders["level1"].head.bias.abs().max() < 30


def test_left_right_consistency_term(frames):
    adapter = fresh(AdaptationConfig(mode="full", learning_rate=1e-5, lr_consistency_weight=0.05))
    result = adapter.step(*frames[0][:2])
    assert {"lr_consistency", "photometric_right"} <= set(result.terms) and result.terms["lr_consistency"] >= 0


def test_non_finite_and_few_valid_frames_are_skipped(frames):
    adapter = fresh(AdaptationConfig(mode="full", learning_rate=1e-5))
    left, right, _ = frames[0]
    before = params_of(adapter.model)
    bad = left.clone()
    bad[..., 10:20, 10:20] = float("nan")
    result = adapter.step(bad, right)
    assert result.status == "skipped_non_finite" and not changed(before, adapter.model)
    strict = fresh(AdaptationConfig(mode="full", learning_rate=1e-5, min_valid_fraction=0.9))
    result = strict.step(left, left)  # identical views: the un-warped image already matches
    assert result.status == "skipped_few_valid" and strict.skipped == 1


def test_injected_divergence_is_rolled_back_within_ten_frames(frames):
    """The shipped defaults (full mode, SGBM proxy), then the learning rate x1000."""
    config = replace(AdaptationConfig(), warmup_steps=3, snapshot_every=2)
    adapter = fresh(config)
    for left, right, _ in frames[:6]:
        assert adapter.step(left, right).status == "adapted"
    adapter.set_config(replace(config, learning_rate=1000 * config.learning_rate))
    statuses = [adapter.step(left, right).status for left, right, _ in frames[6:16]]
    # Detected and rolled back within 10 frames of the first bad update.
    assert "rolled_back" in statuses and adapter.rollbacks >= 1
    assert all(torch.isfinite(p).all() for p in adapter.model.parameters())
    # Back at the normal rate: damage left by the last high-rate steps is rolled back within
    # `patience` frames, then adaptation carries on with most pixels usable again.
    adapter.set_config(config)
    results = [adapter.step(*frames[k][:2]) for k in range(config.patience + 2)]
    assert results[-1].status == "adapted" and results[-1].valid_fraction > 0.5


def test_corrupted_burst_is_rejected_and_depth_recovers(frames):
    config = AdaptationConfig(mode="full", learning_rate=1e-5, warmup_steps=3, snapshot_every=2)
    adapter = fresh(config)
    for left, right, _ in frames[:6]:
        adapter.step(left, right)
    gen = torch.Generator().manual_seed(0)
    burst = [adapter.step(torch.rand(1, 3, H, W, generator=gen), torch.rand(1, 3, H, W, generator=gen)).status for _ in range(5)]
    assert set(burst) <= {"rolled_back", "skipped_few_valid", "adapted"} and "rolled_back" in burst
    left, right, gt = frames[7]
    with torch.no_grad():
        epe_after = float(np.abs(adapter.model(left, right).disparity[0, 0].numpy() - gt).mean())
    reference, _ = load_model(None)
    with torch.no_grad():
        epe_ref = float(np.abs(reference(left, right).disparity[0, 0].numpy() - gt).mean())
    assert epe_after < 1.5 * epe_ref + 0.5


def test_save_resume_and_fallback(tmp_path, frames, caplog):
    adapter = fresh(AdaptationConfig(mode="full", learning_rate=1e-5))
    for left, right, _ in frames[:2]:
        adapter.step(left, right)
    path = adapter.save(tmp_path / "adapted.safetensors")
    model, meta, source = load_adapted_or_default(path)
    assert source == "adapted" and meta["adapted"]["frames_adapted"] == 2 and meta["adapted"]["mode"] == "full"
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), adapter.model.state_dict().values()))
    path.write_bytes(b"garbage")
    with caplog.at_level(logging.WARNING):
        _, _, source = load_adapted_or_default(path)
    assert source == "default" and "ignoring adapted weights" in caplog.text
    _, _, source = load_adapted_or_default(tmp_path / "missing.safetensors")
    assert source == "default"


def test_reset_restores_initial_weights(frames):
    adapter = fresh(AdaptationConfig(mode="full", learning_rate=1e-4))
    initial = params_of(adapter.model)
    adapter.step(*frames[0][:2])
    assert changed(initial, adapter.model)
    adapter.reset()
    assert not changed(initial, adapter.model)


def test_worker_adapts_newest_frame_and_swaps_weights_atomically(frames):
    adapter = fresh(AdaptationConfig(mode="full", learning_rate=1e-5))
    results = []
    worker_threads = []
    caller_threads = torch.get_num_threads()

    def on_result(result):
        results.append(result)
        worker_threads.append(torch.get_num_threads())

    base_nice = os.getpriority(os.PRIO_PROCESS, 0)
    worker = AdaptationWorker(adapter, on_result=on_result, cpu_threads=1, nice=3)
    try:
        for left, right, _ in frames:
            worker.submit(left, right)  # faster than the worker: older pairs are dropped
        deadline = time.time() + 60
        while not worker.idle() and time.time() < deadline:
            time.sleep(0.01)
        assert worker.idle()
        assert worker.dropped > 0 and len(results) + worker.dropped == len(frames)
        assert worker.published == sum(r.status in ("adapted", "rolled_back") for r in results) >= 1
        # The worker's CPU thread setting is its own; the caller's is untouched.
        assert set(worker_threads) == {1} and torch.get_num_threads() == caller_threads
        # Background work: only the worker thread runs at a lower priority.
        assert worker.thread_nice == min(19, base_nice + 3) and os.getpriority(os.PRIO_PROCESS, 0) == base_nice
        index, model = worker.acquire()
        try:
            for a, b in zip(model.state_dict().values(), adapter.model.state_dict().values()):
                assert torch.equal(a, b)
        finally:
            worker.release(index)
    finally:
        worker.stop()
    assert not worker._thread.is_alive()


def test_a_new_scene_restarts_the_statistics_instead_of_rolling_back_forever(frames):
    """Continual adaptation into another scene (another domain, four times the loss): the jump
    rolls back once; the restored weights show the same high loss (the data changed, not the
    weights), so the statistics restart and adaptation carries on in the new scene."""
    from stereo_depth_ros.core.synthetic import generate_sample

    adapter = fresh(replace(AdaptationConfig(), warmup_steps=3))
    for _ in range(6):
        assert adapter.step(*frames[0][:2]).status == "adapted"
    other = generate_sample(5, W, H, "outdoor")
    left, right = image_to_tensor(other.left), image_to_tensor(other.right)
    assert adapter.step(left, right).status == "rolled_back" and adapter.rebaselines == 0
    statuses = [adapter.step(left, right).status for _ in range(4)]
    assert statuses == ["adapted"] * 4 and adapter.rebaselines == 1 and adapter.rollbacks == 1


def test_replay_memory_rehearses_past_frames(frames):
    """With a replay memory every step also minimises the loss of a remembered frame (reservoir
    of at most ``replay_memory`` frames, offered every ``replay_every`` steps); reset forgets them."""
    adapter = fresh(replace(AdaptationConfig(), replay_memory=2, replay_every=1))
    results = [adapter.step(*f[:2]) for f in frames[:5]]
    assert all(r.status == "adapted" for r in results)
    assert "replay" not in results[0].terms and all(r.terms["replay"] > 0 for r in results[1:])
    assert len(adapter._memory) == 2 and adapter._offered == 5
    assert all(labels is not None and labels.valid.any() for _, _, labels in adapter._memory)
    adapter.reset()
    assert not adapter._memory and "replay" not in adapter.step(*frames[0][:2]).terms
    with pytest.raises(ValueError, match="replay_memory"):
        AdaptationConfig(replay_memory=-1)
