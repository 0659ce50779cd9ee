"""The torch.compile path of the network: same output as eager, weights read in place, eager fallback."""

import shutil

import pytest
import torch
from torch._dynamo.utils import counters

from stereo_depth_ros.core.adaptation import AdaptationConfig, AdaptationWorker, OnlineAdapter
from stereo_depth_ros.core.network import StereoNet
from stereo_depth_ros.core.network.compiled import CompiledStereoNet
from stereo_depth_ros.core.network.estimator import prepare_for_inference
from stereo_depth_ros.core.network.weights import load_model


def _model(seed: int) -> StereoNet:
    """The shipped network, its weights perturbed by ``seed`` (0: unperturbed), ready for inference."""
    model, _ = load_model()
    model = prepare_for_inference(model, "cpu")
    g = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        p.requires_grad_(False)
        if seed:
            p.mul_(1 + 0.2 * torch.randn(p.shape, generator=g))
    return model


@pytest.fixture(scope="module")
def images():
    from stereo_depth_ros.core.synthetic import generate_sample

    s = generate_sample(5, width=128, height=64, domain="indoor")
    return tuple(torch.from_numpy(im).permute(2, 0, 1)[None].contiguous() for im in (s.left, s.right))


@pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None,
                    reason="inductor on CPU needs a C++ compiler")
def test_compiled_matches_eager_is_shared_between_models_and_reads_weights_in_place(images):
    """The adaptation worker relies on all three: two inference models, weights copied in place."""
    torch._dynamo.reset()
    a, b = _model(0), _model(1)
    ca, cb = CompiledStereoNet(a), CompiledStereoNet(b)
    with torch.inference_mode():
        eager_a, eager_b = a(*images).disparity, b(*images).disparity
        assert (eager_a - eager_b).abs().max() > 0.1  # two different networks
        torch.testing.assert_close(ca(*images).disparity, eager_a, atol=1e-3, rtol=0)
        graphs = counters["stats"]["unique_graphs"]
        assert ca.compiled and graphs >= 1
        torch.testing.assert_close(cb(*images).disparity, eager_b, atol=1e-3, rtol=0)
        for dst, src in zip(b.state_dict().values(), a.state_dict().values()):
            dst.copy_(src)  # what AdaptationWorker._publish does
        torch.testing.assert_close(cb(*images).disparity, eager_a, atol=1e-3, rtol=0)
    # Neither the second model nor the new weights needed another compile.
    assert counters["stats"]["unique_graphs"] == graphs and cb.compiled


def test_compile_failure_falls_back_to_eager_and_is_not_retried(images, caplog):
    calls = []

    def broken_backend(graph_module, example_inputs):
        calls.append(1)
        raise RuntimeError("no C++ compiler here")

    torch._dynamo.reset()
    model = _model(0)
    compiled = CompiledStereoNet(model, backend=broken_backend)
    with torch.inference_mode():
        expected = model(*images).disparity
        with caplog.at_level("WARNING"):
            first = compiled(*images).disparity
        second = compiled(*images).disparity
    assert torch.equal(first, expected) and torch.equal(second, expected)
    assert not compiled.compiled and "no C++ compiler here" in compiled.failure
    assert len(calls) == 1 and "running the network eagerly" in caplog.text


def test_wrapper_shares_the_models_parameters_and_state_dict():
    model = _model(0)
    compiled = CompiledStereoNet(model)
    assert list(compiled.state_dict()) == list(model.state_dict())
    assert [id(p) for p in compiled.parameters()] == [id(p) for p in model.parameters()]
    assert compiled.config is model.config
    other = _model(1).state_dict()
    compiled.load_state_dict(other)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in other.items())
    with pytest.raises(ValueError, match="expected a StereoNet"):
        CompiledStereoNet(torch.nn.Linear(2, 2))


def test_worker_hands_out_compiled_models_and_publishes_into_them(images):
    torch.manual_seed(0)
    adapter = OnlineAdapter(StereoNet(), AdaptationConfig(mode="full", learning_rate=1e-4))
    worker = AdaptationWorker(adapter, cpu_threads=1, compile=True)
    try:
        assert worker.compile_state() == "on"
        index, model = worker.acquire()
        worker.release(index)
        assert isinstance(model, CompiledStereoNet)
        worker._publish()  # the path a successful step takes
        index, spare = worker.acquire()
        worker.release(index)
        assert spare is not model
        for a, b in zip(spare.state_dict().values(), adapter.model.state_dict().values()):
            assert torch.equal(a, b)
        spare.failure = "RuntimeError: test"
        assert worker.compile_state() == "failed: RuntimeError: test"
    finally:
        worker.stop()
    plain = AdaptationWorker(OnlineAdapter(StereoNet(), AdaptationConfig(mode="full")), cpu_threads=1)
    try:
        assert plain.compile_state() == "off" and isinstance(plain.acquire()[1], StereoNet)
    finally:
        plain.stop()
