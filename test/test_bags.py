import numpy as np
import pytest

from stereo_depth_ros.bags import BagError, StereoTopics, image_array, read_stereo_bag, write_samples
from stereo_depth_ros.core.synthetic import generate_sequence
from stereo_depth_ros.tools.make_bag import main as make_bag


@pytest.fixture(scope="module")
def frames():
    return list(generate_sequence(2, 3, 96, 64, "outdoor"))


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_round_trip_keeps_stamps_pixels_calibration_and_ground_truth(tmp_path, frames, storage):
    path = write_samples(tmp_path / "bag", frames, rate_hz=20.0, storage=storage)
    assert (path / "metadata.yaml").is_file()
    read = list(read_stereo_bag(path, require_ground_truth=True))
    assert [f.stamp_ns - read[0].stamp_ns for f in read] == [0, 50_000_000, 100_000_000]
    for frame, sample in zip(read, frames):
        assert frame.left.encoding == "rgb8" and frame.left.header.frame_id == "left_optical_frame"
        np.testing.assert_array_equal(image_array(frame.left), np.clip(np.round(sample.left * 255), 0, 255).astype(np.uint8))
        np.testing.assert_array_equal(image_array(frame.right), np.clip(np.round(sample.right * 255), 0, 255).astype(np.uint8))
        np.testing.assert_array_equal(frame.ground_truth_depth, sample.depth_left.astype(np.float32))
        camera = frame.camera()
        assert camera.fx == pytest.approx(sample.focal) and camera.baseline == pytest.approx(sample.baseline)


def test_missing_topics_and_unreadable_bags_are_named(tmp_path, frames):
    path = write_samples(tmp_path / "bag", frames[:1])
    with pytest.raises(BagError, match=r"lacks topic\(s\) \['/cam/left'\]; it has"):
        list(read_stereo_bag(path, StereoTopics(left_image="/cam/left")))
    no_gt = StereoTopics(ground_truth_depth="/nothing")
    assert len(list(read_stereo_bag(path, no_gt))) == 1  # without ground truth the frames still come
    with pytest.raises(BagError, match="lacks topic"):
        list(read_stereo_bag(path, no_gt, require_ground_truth=True))
    with pytest.raises(BagError, match="cannot open rosbag2"):
        list(read_stereo_bag(tmp_path / "not_a_bag"))
    with pytest.raises(ValueError, match="already exists"):
        write_samples(path, frames[:1])


def test_make_bag_command(tmp_path):
    assert make_bag([str(tmp_path / "b"), "--frames", "2", "--size", "96x64", "--namespace", "cam", "--storage", "sqlite3"]) == 0
    topics = StereoTopics("/cam/left/image_rect", "/cam/right/image_rect", "/cam/left/camera_info",
                          "/cam/right/camera_info", "/cam/ground_truth/depth")
    assert len(list(read_stereo_bag(tmp_path / "b", topics))) == 2
