import numpy as np
import pytest
import torch

from stereo_depth_ros.core.camera import StereoCamera
from stereo_depth_ros.core.masks import ValidityConfig
from stereo_depth_ros.core.network.estimator import image_to_tensor, prepare_for_inference
from stereo_depth_ros.core.network.weights import load_model
from stereo_depth_ros.core.pipeline import predict_disparities, predict_left, process_frame, scaled_size
from stereo_depth_ros.core.synthetic import generate_sample


@pytest.fixture(scope="module")
def setup():
    s = generate_sample(6, width=256, height=192, domain="indoor")
    camera = StereoCamera.from_intrinsics(s.width, s.height, s.focal, s.baseline, s.cx, s.cy)
    model = prepare_for_inference(load_model(None)[0], "cpu")
    return s, camera, model, image_to_tensor(s.left), image_to_tensor(s.right)


def test_full_resolution_frame(setup):
    s, camera, model, left, right = setup
    result = process_frame(model, left, right, camera, ValidityConfig())
    assert result.disparity_left.shape == result.disparity_right.shape == (1, 1, 192, 256)
    v = result.validity
    ok = v.mask[0, 0].numpy()
    depth = v.depth[0, 0].numpy()
    disparity = result.disparity_left[0, 0].numpy()
    assert ok.mean() > 0.3
    np.testing.assert_allclose(depth[ok], camera.fx * camera.baseline / disparity[ok], rtol=1e-5)
    assert (v.confidence[0, 0].numpy()[~ok] == 0).all() and (v.confidence[0, 0].numpy()[ok] > 0).all()
    # Quality sanity only (the network's accuracy is measured by the evaluate tool).
    assert np.median(np.abs(depth[ok] - s.depth_left[ok]) / s.depth_left[ok]) < 0.25


def test_inference_size_rescales_disparity_to_the_input(setup):
    s, camera, model, left, right = setup
    full = process_frame(model, left, right, camera, ValidityConfig())
    half = process_frame(model, left, right, camera, ValidityConfig(), inference_size=(96, 128))
    assert half.disparity_left.shape == (1, 1, 192, 256)
    # Same scale as the full-resolution prediction (a missing x2 would double the error).
    err_full = float(np.abs(full.disparity_left[0, 0].numpy() - s.disparity_left).mean())
    err_half = float(np.abs(half.disparity_left[0, 0].numpy() - s.disparity_left).mean())
    assert err_half < 2 * err_full + 1.0
    assert float(half.disparity_left.mean()) == pytest.approx(float(full.disparity_left.mean()), rel=0.15)


def test_camera_must_match_the_images(setup):
    s, camera, model, left, right = setup
    with pytest.raises(ValueError, match="camera: expected a 256x192 rig"):
        process_frame(model, left, right, camera.scaled(128, 96), ValidityConfig())


def test_predict_disparities_is_what_process_frame_validates(setup):
    s, camera, model, left, right = setup
    full = process_frame(model, left, right, camera, ValidityConfig(), inference_size=(96, 128))
    disp_l, disp_r = predict_disparities(model, left, right, inference_size=(96, 128))
    assert disp_l.shape == disp_r.shape == (1, 1, 192, 256)
    assert (disp_l == full.disparity_left).all() and (disp_r == full.disparity_right).all()


def test_predict_left_matches_the_pair_prediction_and_scaled_size(setup):
    s, camera, model, left, right = setup
    for size in (None, (96, 128)):
        alone = predict_left(model, left, right, size)
        with_right, _ = predict_disparities(model, left, right, size)
        assert alone.shape == (1, 1, 192, 256)
        np.testing.assert_allclose(alone.numpy(), with_right.numpy(), atol=1e-3)
    assert scaled_size(480, 640, 0.5) == (240, 320) and scaled_size(480, 640, 1.0) == (480, 640)
    assert scaled_size(100, 200, 0.1) == (32, 32) and scaled_size(480, 640, 1.5) == (720, 960)
    with pytest.raises(ValueError, match=r"scale: expected a factor in \(0, 2\]"):
        scaled_size(480, 640, 2.5)
    # Upsampled (1.25x), the disparity still comes back at the input size and in its pixels.
    native = predict_left(model, left, right, None)
    up = predict_left(model, left, right, scaled_size(192, 256, 1.25))
    assert up.shape == native.shape == (1, 1, 192, 256)
    assert abs(float(up.median()) / float(native.median()) - 1.0) < 0.1


@pytest.mark.parametrize("metadata, expected", [
    ({}, 1.0), ({"inference_scale": 1.2}, 1.2), ({"inference_scale": 1}, 1.0),
    ({"inference_scale": 0.0}, ValueError), ({"inference_scale": 2.5}, ValueError),
    ({"inference_scale": "1.2"}, ValueError), ({"inference_scale": True}, ValueError)])
def test_weights_name_the_scale_they_run_at(metadata, expected):
    from stereo_depth_ros.core.pipeline import weights_inference_scale

    if expected is ValueError:
        with pytest.raises(ValueError, match=r"weights metadata inference_scale: expected a factor in \(0, 2\]"):
            weights_inference_scale(metadata)
    else:
        assert weights_inference_scale(metadata) == expected


def test_frame_outputs_are_the_published_maps_and_cloud(setup):
    """What the node's GPU path publishes equals what its CPU path computes from process_frame."""
    from stereo_depth_ros.core.pipeline import MAP_CHANNELS, frame_outputs
    from stereo_depth_ros.core.pointcloud import as_xyzrgb_points, organized_xyzrgb

    _, camera, model, left, right = setup
    result = process_frame(model, left, right, camera, ValidityConfig())
    maps, points = frame_outputs(model, left, right, camera, ValidityConfig())
    assert maps.shape == (len(MAP_CHANNELS), 192, 256) and maps.dtype == torch.float32
    channel = dict(zip(MAP_CHANNELS, maps.numpy()))
    v = result.validity
    mask = v.mask[0, 0].numpy()
    np.testing.assert_array_equal(channel["disparity"], result.disparity_left[0, 0].numpy())
    np.testing.assert_array_equal(channel["disparity_right"], result.disparity_right[0, 0].numpy())
    np.testing.assert_array_equal(channel["mask"], mask.astype(np.float32))
    depth = np.where(mask, v.depth[0, 0].numpy(), np.float32(np.nan))
    np.testing.assert_array_equal(channel["depth"], depth)  # NaN where masked, in both
    np.testing.assert_array_equal(channel["confidence"], v.confidence[0, 0].numpy())
    np.testing.assert_array_equal(channel["photometric_error"], v.photometric_error[0, 0].numpy())
    rgb = np.round(left[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    expected = organized_xyzrgb(depth, camera.K_numpy(), rgb)
    assert as_xyzrgb_points(points.numpy()).tobytes() == expected.tobytes()  # bit for bit, NaN points too
    # Explicit colours and no cloud.
    grey = torch.full((192, 256, 3), 7, dtype=torch.uint8)
    _, grey_points = frame_outputs(model, left, right, camera, ValidityConfig(), rgb=grey)
    assert as_xyzrgb_points(grey_points.numpy()).tobytes() == organized_xyzrgb(depth, camera.K_numpy(), grey.numpy()).tobytes()
    assert frame_outputs(model, left, right, camera, ValidityConfig(), cloud=False)[1] is None


def test_frame_outputs_split_in_two_halves_with_a_matcher_between(setup):
    """The node on CUDA with fusion: the network's half, then the matcher, then the outputs' half
    (two graphs, SGBM on the CPU between them) publishes what frame_outputs does in one."""
    from stereo_depth_ros.core.adaptation import AdaptationConfig, proxy_matcher
    from stereo_depth_ros.core.cuda_graph import CudaGraphRunner
    from stereo_depth_ros.core.fusion import SOURCE_AGREE, SOURCE_MATCHER, SOURCE_NETWORK
    from stereo_depth_ros.core.pipeline import (MAP_CHANNELS, frame_outputs, outputs_from_disparities,
                                                predict_disparities, run_matcher)

    _, camera, model, left, right = setup
    matcher = torch.from_numpy(run_matcher(proxy_matcher(AdaptationConfig(), 192.0), left, right))[None, None]
    runner = CudaGraphRunner()  # on a CPU it calls the functions: the node's code path, not its graphs
    for config in (ValidityConfig(), ValidityConfig(lr_max_difference=None)):
        right_view = config.lr_max_difference is not None
        disp_l, disp_r = runner(lambda l, r: predict_disparities(model, l, r, right_view=right_view), left, right)
        assert (disp_r is not None) == right_view
        maps, points = runner(lambda l, r, dl, m: outputs_from_disparities(dl, disp_r, l, r, camera, config,
                                                                           matcher_disparity=m),
                              left, right, disp_l, matcher)
        whole_maps, whole_points = frame_outputs(model, left, right, camera, config, matcher_disparity=matcher)
        np.testing.assert_array_equal(maps.numpy(), whole_maps.numpy())
        assert points.numpy().tobytes() == whole_points.numpy().tobytes()
        source = dict(zip(MAP_CHANNELS, maps))["source"]
        codes = set(source.unique().int().tolist())
        assert codes <= {SOURCE_NETWORK, SOURCE_MATCHER, SOURCE_AGREE} and SOURCE_AGREE in codes
    with pytest.raises(ValueError, match="camera"):
        outputs_from_disparities(disp_l, None, left[..., :64], right[..., :64], camera, ValidityConfig(lr_max_difference=None))


def test_bf16_precision_stays_close_to_fp32_and_bad_precision_is_refused(setup):
    _, camera, model, left, right = setup
    fp32 = predict_disparities(model, left, right)
    bf16 = predict_disparities(model, left, right, precision="bf16")
    assert bf16[0].dtype == torch.float32 and bf16[0].shape == fp32[0].shape
    change = (bf16[0] - fp32[0]).abs().mean().item()
    assert 0 < change < 0.5  # it did run in bfloat16, and stays near (the GPU figure is in the README)
    with pytest.raises(ValueError, match="precision: expected one of"):
        predict_disparities(model, left, right, precision="fp16")


def test_the_matcher_runs_on_the_images_as_they_are_when_the_network_input_is_upsampled(setup):
    """run_matcher: for a larger network input SGBM matches the images as they are and its disparity
    is brought to that size (nearest, in its pixels); for a smaller one it matches the resized images."""
    from stereo_depth_ros.core.adaptation import AdaptationConfig, proxy_matcher
    from stereo_depth_ros.core.pipeline import resize_images, run_matcher

    s, _, _, left, right = setup
    matcher = proxy_matcher(AdaptationConfig(), 192.0)
    native = run_matcher(matcher, left, right)
    up = run_matcher(matcher, left, right, size=(384, 512))  # 2x: every native pixel becomes a 2x2 block
    assert up.shape == (384, 512) and up.dtype == np.float32
    np.testing.assert_array_equal(np.isnan(up[::2, ::2]), np.isnan(native))
    np.testing.assert_allclose(up[::2, ::2][~np.isnan(native)], 2.0 * native[~np.isnan(native)], rtol=1e-6)
    gt = s.disparity_left
    valid = ~np.isnan(native)
    assert np.median(np.abs(native[valid] - gt[valid])) < 2.0  # a real match, not a constant
    half = run_matcher(matcher, left, right, size=(96, 128))
    np.testing.assert_array_equal(np.nan_to_num(half, nan=-1.0),
                                  np.nan_to_num(matcher(*(resize_images(t, (96, 128))[0].permute(1, 2, 0).numpy()
                                                          for t in (left, right))), nan=-1.0))


def test_resize_images_antialiases_only_what_it_shrinks():
    from stereo_depth_ros.core.pipeline import resize_images

    image = torch.rand(1, 3, 48, 64, generator=torch.Generator().manual_seed(4))
    for size in ((58, 77), (96, 128), (48, 80)):  # enlarged: antialiasing is bilinear itself
        torch.testing.assert_close(resize_images(image, size), torch.nn.functional.interpolate(
            image, size=size, mode="bilinear", align_corners=False, antialias=True), rtol=0, atol=1e-4)
    for size in ((24, 32), (60, 40)):  # shrunk on an axis: antialiased, not plain bilinear
        expected = torch.nn.functional.interpolate(image, size=size, mode="bilinear", align_corners=False,
                                                   antialias=True)
        torch.testing.assert_close(resize_images(image, size), expected, rtol=0, atol=0)
        plain = torch.nn.functional.interpolate(image, size=size, mode="bilinear", align_corners=False)
        assert (plain - expected).abs().max() > 1e-3
    assert resize_images(image, None) is image and resize_images(image, (48, 64)) is image
