"""CUDA graph replay of the frame's GPU work, and the pinned host buffers around it.

The graph tests need a GPU and are skipped without one (CI has none; they ran on an H100 through
the ``device`` tool, see the README). The CPU behaviour and the argument checks run everywhere.
"""

import numpy as np
import pytest
import torch

from stereo_depth_ros.core.camera import StereoCamera
from stereo_depth_ros.core.cuda_graph import CudaGraphRunner
from stereo_depth_ros.core.masks import ValidityConfig
from stereo_depth_ros.core.network.estimator import prepare_for_inference
from stereo_depth_ros.core.network.weights import load_model
from stereo_depth_ros.core.pinned_buffers import PinnedBuffers
from stereo_depth_ros.core.pipeline import frame_outputs

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_on_cpu_the_runner_just_calls_the_function():
    runner = CudaGraphRunner()
    calls = []

    def fn(x: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return x * 2

    for value in (1.0, 2.0):
        out = runner(fn, torch.full((3,), value), key="k")
        assert torch.equal(out, torch.full((3,), 2 * value))
    assert len(calls) == 2 and runner.captures == 0 and runner.num_graphs == 0 and runner.active


def test_runner_and_buffers_refuse_bad_arguments():
    with pytest.raises(ValueError, match="warmup: expected an integer >= 1"):
        CudaGraphRunner(warmup=0)
    with pytest.raises(ValueError, match="max_graphs: expected an integer >= 1"):
        CudaGraphRunner(max_graphs=0)
    with pytest.raises(ValueError, match="expected at least one tensor"):
        CudaGraphRunner()(lambda: None)
    with pytest.raises(ValueError, match=r"tensors\[1\]: expected a torch.Tensor, got ndarray"):
        CudaGraphRunner()(lambda a, b: a, torch.zeros(1), np.zeros(1))
    with pytest.raises(ValueError, match="expected a CUDA device"):
        PinnedBuffers("cpu")


@pytest.fixture(scope="module")
def frame():
    from stereo_depth_ros.core.synthetic import generate_sample

    s = generate_sample(7, width=160, height=96, domain="indoor")
    camera = StereoCamera.from_intrinsics(s.width, s.height, s.focal, s.baseline, s.cx, s.cy)
    left, right = (torch.from_numpy(im).permute(2, 0, 1)[None].contiguous() for im in (s.left, s.right))
    return camera, left, right


@cuda
def test_graph_replays_the_frame_like_eager_and_reads_weights_in_place(frame):
    camera, left, right = (frame[0], *(t.cuda() for t in frame[1:]))
    model = prepare_for_inference(load_model(None)[0], "cuda")
    for p in model.parameters():
        p.requires_grad_(False)
    work = lambda l, r: frame_outputs(model, l, r, camera, ValidityConfig())  # noqa: E731
    runner = CudaGraphRunner()
    with torch.inference_mode():
        eager_maps, eager_points = work(left, right)
        maps, points = runner(work, left, right, key="frame")
        torch.testing.assert_close(maps, eager_maps, equal_nan=True, rtol=0, atol=1e-4)
        torch.testing.assert_close(points, eager_points, equal_nan=True, rtol=0, atol=1e-4)
        # A second frame: replayed (no new capture) into the same output tensors, with its own values.
        flipped = (torch.flip(right, [-1]), torch.flip(left, [-1]))
        again = runner(work, *flipped, key="frame")
        assert runner.captures == 1 and again[0] is maps
        torch.testing.assert_close(again[0], work(*flipped)[0], equal_nan=True, rtol=0, atol=1e-4)
        # Weights changed in place (as the adaptation worker publishes them) reach the replay.
        for p in model.parameters():
            p.mul_(1.1)
        torch.testing.assert_close(runner(work, left, right, key="frame")[0], work(left, right)[0],
                                   equal_nan=True, rtol=0, atol=1e-4)
        assert runner.captures == 1
        # Another key or size captures another graph.
        runner(work, left, right, key="other")
        runner(lambda l, r: frame_outputs(model, l, r, camera, ValidityConfig(), cloud=False), left, right, key="no cloud")
        assert runner.captures == 3 and runner.failure is None


@cuda
def test_capture_failure_falls_back_to_eager_for_good():
    runner = CudaGraphRunner()
    x = torch.arange(4.0, device="cuda")
    syncs = lambda t: t * float(t.sum().item())  # noqa: E731 - a host sync: cannot be captured
    assert torch.equal(runner(syncs, x), x * 6.0)
    assert not runner.active and runner.failure and runner.captures == 0
    assert torch.equal(runner(lambda t: t + 1, x), x + 1)  # eager from now on
    assert runner.captures == 0


@cuda
def test_pinned_buffers_round_trip():
    buffers = PinnedBuffers("cuda")
    a = np.random.default_rng(0).random((5, 7, 3), dtype=np.float32)
    b = np.arange(12, dtype=np.uint8).reshape(3, 4)
    ta, tb = buffers.upload("a", a), buffers.upload("b", b)
    assert ta.is_cuda and ta.dtype == torch.float32 and tb.dtype == torch.uint8
    back_a, none, back_b = buffers.download((ta * 2, None, tb))
    np.testing.assert_array_equal(back_a, a * 2)
    np.testing.assert_array_equal(back_b, b)
    assert none is None
    ta2 = buffers.upload("a", a + 1)  # the same pinned buffer, rewritten after its last copy
    np.testing.assert_array_equal(buffers.download((ta2,))[0], a + 1)
