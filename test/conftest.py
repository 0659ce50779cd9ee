"""Shared fixtures: devices (CPU, plus CUDA when present) and ROS isolation for every test run."""

from __future__ import annotations

import os

import pytest
import torch

# Never leave the machine, never collide with another run: loopback discovery only.
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request: pytest.FixtureRequest) -> torch.device:
    return torch.device(request.param)


@pytest.fixture(params=[1, 3], ids=["batch1", "batch3"])
def batch(request: pytest.FixtureRequest) -> int:
    return request.param
