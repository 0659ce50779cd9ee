"""stereo_depth_bench_node's command line: --param names are the node's, values reach it with the declared type."""

from __future__ import annotations

import argparse

import pytest

from stereo_depth_ros.tools.bench_node import _parse_param


def test_an_integer_for_a_floating_point_parameter_becomes_a_float():
    name, value = _parse_param("gil_switch_interval_ms=0")
    assert name == "gil_switch_interval_ms" and value == 0.0 and isinstance(value, float)
    assert _parse_param("validity.max_depth=20") == ("validity.max_depth", 20.0)


def test_other_values_keep_their_yaml_type():
    assert _parse_param("compile=true") == ("compile", True)
    name, value = _parse_param("diagnostics.icp_every=0")  # an integer parameter stays an integer
    assert value == 0 and isinstance(value, int)
    assert _parse_param("precision=bf16") == ("precision", "bf16")
    assert _parse_param("qos_overrides./points2.publisher.depth=1") == ("qos_overrides./points2.publisher.depth", 1)


@pytest.mark.parametrize("text, message", [("no_equals_sign", "expected NAME=VALUE"), ("=3", "expected NAME=VALUE"),
                                           ("not_a_parameter=3", "unknown node parameter 'not_a_parameter'")])
def test_malformed_text_or_an_unknown_name_is_a_usage_error(text, message):
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        _parse_param(text)
