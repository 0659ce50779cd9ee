import re
from dataclasses import fields

import pytest

from stereo_depth_ros.ros.params import PARAMS, NodeConfig, config_from_values, defaults, validate_values


def test_config_fields_follow_the_parameter_table():
    assert [f.name for f in fields(NodeConfig)] == [p.field for p in PARAMS]
    config = config_from_values(defaults())
    assert config.validity().lr_max_difference == 3.0 and config.adaptation().mode == "full" and config.adaptation().proxy == "sgbm"


def test_descriptors_carry_ranges_choices_and_read_only():
    by_name = {p.name: p.descriptor() for p in PARAMS}
    assert by_name["device"].read_only and not by_name["validity.max_depth"].read_only
    assert by_name["queue_size"].integer_range[0].from_value == 1
    assert by_name["adaptation.learning_rate"].floating_point_range[0].to_value == pytest.approx(1e-2)
    assert "full, mad, none" in by_name["adaptation.mode"].description


@pytest.mark.parametrize(
    "change, message",
    [
        ({"adaptation.mode": "often"}, "adaptation.mode: expected one of"),
        ({"queue_size": 0}, r"queue_size: expected a value in \[1, 100\]"),
        ({"slop": "fast"}, "slop: expected float"),
        ({"validity.min_depth": 60.0}, "must be below validity.max_depth"),
        ({"adaptation.resume": True}, "needs adaptation.weights_path"),
        ({"device": "tpu"}, "device: expected auto, cpu, cuda or cuda:N"),
        ({"inference_width": 320}, "set both or neither"),
        ({"inference_width": 320, "inference_height": 240, "inference_scale": 0.5}, "leave it at 0"),
        ({"inference_scale": 0.05}, r"inference_scale: expected 0 \(the weights' own\) or a factor of at least 0.1"),
        ({"inference_scale": -1.0}, r"inference_scale: expected a value in \[0.0, 2.0\]"),
        ({"inference_scale": 2.5}, r"inference_scale: expected a value in \[0.0, 2.0\]"),
    ],
)
def test_invalid_values_are_named(change, message):
    values = {**defaults(), **change}
    problems = validate_values(values)
    assert any(re.search(message, p) for p in problems), problems
    with pytest.raises(ValueError, match=message):
        config_from_values(values)


def test_integers_are_accepted_for_floats():
    assert config_from_values({**defaults(), "slop": 0}).slop == 0.0


def test_values_from_a_params_file_overlay_the_defaults(tmp_path):
    from stereo_depth_ros.ros.params import values_from_yaml

    path = tmp_path / "p.yaml"
    path.write_text("/**:\n  ros__parameters:\n    validity:\n      max_depth: 20.0\n"
                    "/cam/stereo_depth:\n  ros__parameters:\n    queue_size: 7\nother_node:\n  ros__parameters:\n    slop: 0.5\n")
    values = values_from_yaml(str(path))
    assert values["validity.max_depth"] == 20.0 and values["queue_size"] == 7 and values["slop"] == 0.01
    assert config_from_values(values).validity().max_depth == 20.0


def test_inference_size_from_explicit_size_or_scale():
    from stereo_depth_ros.ros.params import inference_size

    assert inference_size(config_from_values(defaults()), 480, 640) is None
    # 0 (the default): the scale the weights name; a scale set by hand wins over it
    assert inference_size(config_from_values(defaults()), 480, 640, weights_scale=1.2) == (576, 768)
    assert inference_size(config_from_values({**defaults(), "inference_scale": 1.0}), 480, 640, 1.2) is None
    assert inference_size(config_from_values({**defaults(), "inference_scale": 0.5}), 480, 640, 1.2) == (240, 320)
    assert inference_size(config_from_values({**defaults(), "inference_scale": 0.5}), 480, 640) == (240, 320)
    assert inference_size(config_from_values({**defaults(), "inference_scale": 1.5}), 480, 640) == (720, 960)
    assert inference_size(config_from_values({**defaults(), "inference_scale": 0.1}), 100, 200) == (32, 32)
    explicit = config_from_values({**defaults(), "inference_width": 256, "inference_height": 192})
    assert inference_size(explicit, 480, 640) == (192, 256)
    assert inference_size(explicit, 480, 640, weights_scale=1.2) == (192, 256)
