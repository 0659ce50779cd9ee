"""stereo_depth_ros.ros.sync: exact and approximate synchronisers on crafted stamp sequences, plus a
StereoSubscriber run over real rclpy topics."""

from __future__ import annotations

import os
import random
import threading
import time
import zlib
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from stereo_depth_ros.ros.sync import (
    STEREO_INPUTS,
    ApproximateTimeSynchronizer,
    ExactTimeSynchronizer,
    StereoSubscriber,
    SyncError,
    message_filters_available,
    stamp_to_ns,
)

MS = 1_000_000  # nanoseconds


def msg(name: str, stamp_ns: int) -> SimpleNamespace:
    """A message-like object with ``header.stamp`` (sec, nanosec) and a name for assertions."""
    stamp = SimpleNamespace(sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000)
    return SimpleNamespace(name=name, header=SimpleNamespace(stamp=stamp))


class Recorder:
    """Collects the names of every delivered set."""

    def __init__(self) -> None:
        self.sets: list[tuple[str, ...]] = []

    def __call__(self, *msgs: Any) -> None:
        self.sets.append(tuple(m.name for m in msgs))


def feed(sync: Any, events: list[tuple[int, str, int]]) -> None:
    """``events``: (input index, name, stamp in ms)."""
    for index, name, stamp_ms in events:
        sync.add(index, msg(name, stamp_ms * MS))


# ============================================================================ common
def test_stamp_to_ns_and_errors() -> None:
    assert stamp_to_ns(msg("a", 12 * 1_000_000_000 + 345)) == 12_000_000_345
    with pytest.raises(SyncError, match="expected a header.stamp .* got int"):
        stamp_to_ns(3)
    sync = ExactTimeSynchronizer(2, 5)
    with pytest.raises(SyncError, match=r"input index: expected 0..1, got 2"):
        sync.add(2, msg("a", 1))
    with pytest.raises(SyncError, match="header.stamp"):
        sync.add(0, object())
    with pytest.raises(SyncError, match="queue_size: expected an integer >= 1, got 0"):
        ExactTimeSynchronizer(2, 0)
    with pytest.raises(SyncError, match="queue_size: expected an integer >= 1, got 2.5"):
        ExactTimeSynchronizer(2, 2.5)  # type: ignore[arg-type]
    with pytest.raises(SyncError, match="num_inputs"):
        ExactTimeSynchronizer(0, 3)
    for slop in (-0.1, float("nan"), float("inf"), "0.1"):
        with pytest.raises(SyncError, match="slop: expected a finite number of seconds"):
            ApproximateTimeSynchronizer(2, 5, slop)  # type: ignore[arg-type]
    with pytest.raises(SyncError, match="callback: expected a callable"):
        sync.register_callback(42)  # type: ignore[arg-type]


def test_explicit_stamps_and_several_callbacks() -> None:
    first, second = Recorder(), Recorder()
    sync = ExactTimeSynchronizer(2, 5, first)
    sync.register_callback(second)
    assert sync.add(0, SimpleNamespace(name="L"), stamp_ns=7) == 0
    assert sync.add(1, SimpleNamespace(name="R"), stamp_ns=7) == 1
    assert first.sets == second.sets == [("L", "R")]
    add_left = sync.input(0)
    add_left(msg("L2", 9))
    assert sync.stats().queued == [1, 0]


# ============================================================================ exact
def test_exact_fires_on_identical_stamps_in_input_order() -> None:
    out = Recorder()
    sync = ExactTimeSynchronizer(4, 5, out)
    feed(sync, [(2, "li1", 10), (0, "l1", 10), (3, "ri1", 10)])
    assert out.sets == []
    feed(sync, [(1, "r1", 10)])
    assert out.sets == [("l1", "r1", "li1", "ri1")]
    stats = sync.stats()
    assert stats.matched == 1 and stats.received == [1, 1, 1, 1] and stats.queued == [0, 0, 0, 0]
    assert stats.dropped == [0, 0, 0, 0]


def test_exact_missing_input_never_fires_and_is_dropped_by_a_newer_set() -> None:
    out = Recorder()
    sync = ExactTimeSynchronizer(4, 5, out)
    feed(sync, [(0, "l1", 10), (1, "r1", 10), (2, "li1", 10)])  # right camera_info of frame 1 lost
    feed(sync, [(0, "l2", 20), (1, "r2", 20), (2, "li2", 20), (3, "ri2", 20)])
    assert out.sets == [("l2", "r2", "li2", "ri2")]
    stats = sync.stats()
    assert stats.dropped_unmatched == [1, 1, 1, 0]
    assert stats.queued == [0, 0, 0, 0]
    feed(sync, [(3, "ri1", 10)])  # arrives after frame 2 fired: late, never delivered
    feed(sync, [(3, "ri2-again", 20)])
    assert sync.stats().dropped_late == [0, 0, 0, 2]
    assert len(out.sets) == 1


def test_exact_out_of_order_arrival() -> None:
    out = Recorder()
    sync = ExactTimeSynchronizer(2, 5, out)
    feed(sync, [(0, "l2", 20), (0, "l1", 10), (1, "r1", 10), (1, "r2", 20)])
    assert out.sets == [("l1", "r1"), ("l2", "r2")]
    assert sync.stats().dropped == [0, 0]


def test_exact_out_of_order_newer_set_first_makes_older_late() -> None:
    out = Recorder()
    sync = ExactTimeSynchronizer(2, 5, out)
    feed(sync, [(0, "l1", 10), (0, "l2", 20), (1, "r2", 20), (1, "r1", 10)])
    assert out.sets == [("l2", "r2")]
    stats = sync.stats()
    assert stats.dropped_unmatched == [1, 0] and stats.dropped_late == [0, 1]


def test_exact_queue_bound_drops_oldest_and_counts_it() -> None:
    out = Recorder()
    sync = ExactTimeSynchronizer(2, 3, out)
    feed(sync, [(0, f"l{i}", 10 * i) for i in range(1, 6)])  # 10..50, right camera silent
    stats = sync.stats()
    assert stats.queued == [3, 0] and stats.dropped_overflow == [2, 0]
    feed(sync, [(1, "r1", 10)])  # its partner was pushed out
    assert out.sets == []
    feed(sync, [(1, "r3", 30)])
    assert out.sets == [("l3", "r3")]
    stats = sync.stats()
    assert stats.dropped_unmatched == [0, 1]  # r1
    assert stats.queued == [2, 0]  # l4, l5 wait
    feed(sync, [(1, "r5", 50)])
    assert out.sets[-1] == ("l5", "r5") and sync.stats().dropped_unmatched == [1, 1]


def test_exact_duplicate_stamp_replaces_and_counts() -> None:
    out = Recorder()
    sync = ExactTimeSynchronizer(2, 3, out)
    feed(sync, [(0, "l1", 10), (0, "l1b", 10), (1, "r1", 10)])
    assert out.sets == [("l1b", "r1")]
    assert sync.stats().dropped_duplicate == [1, 0]


def test_reset_forgets_state() -> None:
    out = Recorder()
    sync = ExactTimeSynchronizer(2, 3, out)
    feed(sync, [(0, "l1", 50), (1, "r1", 50), (0, "l0", 10)])
    sync.reset()  # e.g. bag restarted: stamps go back in time
    assert sync.stats().received == [0, 0]
    feed(sync, [(0, "l0", 10), (1, "r0", 10)])
    assert out.sets[-1] == ("l0", "r0")


def test_exact_is_thread_safe() -> None:
    frames, inputs = 300, 4
    delivered: list[int] = []
    sync = ExactTimeSynchronizer(inputs, frames, lambda *m: delivered.append(stamp_to_ns(m[0])))

    def producer(index: int) -> None:
        rng = random.Random(index)
        for i in range(1, frames + 1):
            sync.add(index, msg(f"{index}:{i}", i * MS))
            if rng.random() < 0.05:
                time.sleep(0)

    threads = [threading.Thread(target=producer, args=(i,)) for i in range(inputs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert delivered == [i * MS for i in range(1, frames + 1)]
    assert sync.stats().dropped == [0] * inputs


# ============================================================================ approximate
def test_approximate_within_slop_fires() -> None:
    out = Recorder()
    sync = ApproximateTimeSynchronizer(2, 5, slop=0.010, callback=out)
    feed(sync, [(0, "l1", 1000), (1, "r1", 1006)])
    assert out.sets == [("l1", "r1")]


def test_approximate_slop_is_inclusive() -> None:
    out = Recorder()
    sync = ApproximateTimeSynchronizer(2, 5, slop=0.010, callback=out)
    feed(sync, [(0, "l1", 1000), (1, "r1", 1010)])
    assert out.sets == [("l1", "r1")]


def test_approximate_beyond_slop_does_not_fire() -> None:
    out = Recorder()
    sync = ApproximateTimeSynchronizer(2, 5, slop=0.010, callback=out)
    feed(sync, [(0, "l1", 1000), (1, "r1", 1011)])
    assert out.sets == [] and sync.stats().queued == [1, 1]
    feed(sync, [(0, "l2", 1015)])  # r1 now has a partner within slop; l1 is older and goes
    assert out.sets == [("l2", "r1")]
    assert sync.stats().dropped_unmatched == [1, 0]


def test_approximate_chooses_the_earliest_set() -> None:
    out = Recorder()
    sync = ApproximateTimeSynchronizer(2, 5, slop=0.050, callback=out)
    feed(sync, [(0, "l1", 1000), (0, "l2", 1020), (1, "r", 1010)])
    # (l1, r) and (l2, r) both span 10 ms: the one starting earliest wins.
    assert out.sets == [("l1", "r")]
    assert sync.stats().queued == [1, 0]  # l2 is newer than l1: kept for the next set


def test_approximate_takes_earliest_partner_after_the_oldest_message() -> None:
    out = Recorder()
    sync = ApproximateTimeSynchronizer(3, 5, slop=0.030, callback=out)
    feed(sync, [(1, "a1", 1005), (1, "a2", 1020), (2, "b1", 1025), (0, "c1", 1000)])
    assert out.sets == [("c1", "a1", "b1")]
    assert sync.stats().queued == [0, 1, 0]


def test_approximate_drops_older_and_rejects_late() -> None:
    out = Recorder()
    sync = ApproximateTimeSynchronizer(3, 5, slop=0.050, callback=out)
    feed(sync, [(0, "l-old", 1000), (0, "l", 2000), (1, "r", 2000), (2, "i", 2010)])
    assert out.sets == [("l", "r", "i")]
    stats = sync.stats()
    assert stats.dropped_unmatched == [1, 0, 0] and stats.queued == [0, 0, 0]
    feed(sync, [(0, "l-late", 1990), (1, "r-late", 2000)])
    assert sync.stats().dropped_late == [1, 1, 0]
    feed(sync, [(0, "l3", 3000), (1, "r3", 3001), (2, "i3", 2999)])
    assert out.sets[-1] == ("l3", "r3", "i3")


def test_approximate_fires_every_complete_set_in_order() -> None:
    out = Recorder()
    sync = ApproximateTimeSynchronizer(2, 10, slop=0.005, callback=out)
    feed(sync, [(0, f"l{i}", 100 * i) for i in range(1, 4)])
    feed(sync, [(1, "r1", 101), (1, "r2", 199), (1, "r3", 302)])
    assert out.sets == [("l1", "r1"), ("l2", "r2"), ("l3", "r3")]


def test_approximate_queue_bound() -> None:
    out = Recorder()
    sync = ApproximateTimeSynchronizer(2, 2, slop=0.005, callback=out)
    feed(sync, [(0, f"l{i}", 100 * i) for i in range(1, 5)])
    assert sync.stats().dropped_overflow == [2, 0] and sync.stats().queued == [2, 0]
    feed(sync, [(1, "r1", 100)])
    assert out.sets == []
    feed(sync, [(1, "r3", 301)])
    assert out.sets == [("l3", "r3")]


def test_approximate_zero_slop_is_exact() -> None:
    out = Recorder()
    sync = ApproximateTimeSynchronizer(2, 5, slop=0.0, callback=out)
    feed(sync, [(0, "l1", 10), (1, "r1", 11), (1, "r1b", 10)])
    assert out.sets == [("l1", "r1b")]


def test_synchronizers_work_without_rclpy() -> None:
    """The core logic is pure Python: importable and usable where rclpy is refused."""
    code = (
        "import importlib.abc, sys\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('rclpy', 'sensor_msgs', 'message_filters', 'rosidl_parser'):\n"
        "            raise ImportError('blocked: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from types import SimpleNamespace as NS\n"
        "from stereo_depth_ros.ros.sync import ApproximateTimeSynchronizer\n"
        "out = []\n"
        "sync = ApproximateTimeSynchronizer(2, 3, 0.01, lambda *m: out.append(m))\n"
        "sync.add(0, 'l', stamp_ns=1000); sync.add(1, 'r', stamp_ns=2000)\n"
        "assert out == [('l', 'r')], out\n"
        "assert 'rclpy' not in sys.modules\n"
        "print('ok')\n"
    )
    import subprocess
    import sys

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([repo, os.environ.get("PYTHONPATH", "")]))
    result = subprocess.run([sys.executable, "-c", code], env=env, cwd=repo, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


# ============================================================================ real rclpy topics
def _domain_id(name: str) -> int:
    """A ROS domain in 1..100 derived from the test and the process, to avoid collisions."""
    return 1 + zlib.crc32(f"{name}:{os.getpid()}".encode()) % 100


@pytest.fixture()
def ros_context(request: pytest.FixtureRequest):
    rclpy = pytest.importorskip("rclpy")
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=_domain_id(request.node.nodeid))
    try:
        yield context
    finally:
        rclpy.shutdown(context=context)


@pytest.mark.parametrize("mode", ["exact", "approximate"])
def test_stereo_subscriber_over_real_topics(ros_context: Any, mode: str) -> None:
    from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.node import Node
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, Image

    from stereo_depth_ros.core.camera import StereoCamera
    from stereo_depth_ros.ros.conversions import camera_info_msg, image_to_numpy, numpy_to_image

    frames = 12
    prefix = f"/sync_test_{mode}_{os.getpid()}"
    qos = QoSProfile(depth=frames * 2, reliability=ReliabilityPolicy.RELIABLE)
    sub_node = Node("stereo_sync_sub", context=ros_context)
    pub_node = Node("stereo_sync_pub", context=ros_context)
    received: list[tuple[int, int, int, int, int]] = []
    done = threading.Event()

    def on_set(left: Image, right: Image, left_info: CameraInfo, right_info: CameraInfo) -> None:
        received.append((
            left.header.stamp.sec, int(image_to_numpy(left)[0, 0]), int(image_to_numpy(right)[0, 0]),
            left_info.header.stamp.sec, right_info.header.stamp.sec,
        ))
        if len(received) >= frames:
            done.set()

    stereo = StereoSubscriber(
        sub_node, on_set,
        left_image_topic=f"{prefix}/left/image_rect", right_image_topic=f"{prefix}/right/image_rect",
        left_info_topic=f"{prefix}/left/camera_info", right_info_topic=f"{prefix}/right/camera_info",
        qos=qos, queue_size=frames, approximate=mode == "approximate", slop=0.005,
        # The group runs one callback at a time: a multi-threaded executor still spins, but each
        # topic reaches the synchroniser in order (a reentrant group is refused, see below).
        callback_group=MutuallyExclusiveCallbackGroup(),
    )
    assert stereo.backend == ("message_filters" if message_filters_available() else "builtin")
    publishers = [pub_node.create_publisher(t, f"{prefix}/{name}", qos) for t, name in (
        (Image, "left/image_rect"), (Image, "right/image_rect"),
        (CameraInfo, "left/camera_info"), (CameraInfo, "right/camera_info"))]
    executor = MultiThreadedExecutor(num_threads=4, context=ros_context)
    executor.add_node(sub_node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        deadline = time.monotonic() + 15.0
        while any(p.get_subscription_count() < 1 for p in publishers) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert all(p.get_subscription_count() >= 1 for p in publishers), "subscriptions not matched"
        camera = StereoCamera.from_intrinsics(6, 4, 5.0, 0.1)
        for i in range(frames):
            header_left = camera_info_msg(camera).header
            header_left.stamp.sec, header_left.frame_id = 100 + i, "left_optical"
            header_right = camera_info_msg(camera).header
            # Approximate mode: the right camera's stamps jitter by a millisecond.
            header_right.stamp.sec, header_right.frame_id = 100 + i, "right_optical"
            header_right.stamp.nanosec = 1_000_000 if mode == "approximate" else 0
            messages = [
                numpy_to_image(np.full((4, 6), i, np.uint8), "mono8", header_left),
                numpy_to_image(np.full((4, 6), 100 + i, np.uint8), "mono8", header_right),
                camera_info_msg(camera, header_left),
                camera_info_msg(camera, header_right),
            ]
            order = list(range(4))
            random.Random(i).shuffle(order)  # arrival order varies per frame
            for k in order:
                publishers[k].publish(messages[k])
        assert done.wait(15.0), f"only {len(received)}/{frames} sets delivered: {stereo.stats()}"
        time.sleep(0.2)  # a duplicate delivery would show up here
    finally:
        executor.shutdown()
        spinner.join(timeout=5)
        stereo.destroy()
        sub_node.destroy_node()
        pub_node.destroy_node()
    assert sorted(received) == [(100 + i, i, 100 + i, 100 + i, 100 + i) for i in range(frames)]
    stats = stereo.stats()
    assert stats["matched"] == frames
    assert set(stats["inputs"]) == set(STEREO_INPUTS)
    for name in STEREO_INPUTS:
        counters = stats["inputs"][name]
        assert counters["received"] == frames and counters["last_receive_monotonic"] is not None
        if stats["backend"] == "builtin":
            assert counters["dropped_overflow"] == counters["dropped_late"] == counters["dropped_unmatched"] == 0


def test_stereo_subscriber_refuses_a_reentrant_callback_group(ros_context: Any) -> None:
    """rclpy's multi-threaded executor re-arms a subscription as soon as a message is taken, so a
    reentrant group can run two callbacks of one topic at once and deliver them out of order (CI saw
    the later frame win the lock, the earlier one then read as time starting over, 9/12 sets)."""
    from rclpy.callback_groups import ReentrantCallbackGroup
    from rclpy.node import Node

    node = Node("stereo_sync_reentrant", context=ros_context)
    try:
        for backend in ("builtin", "auto"):
            with pytest.raises(SyncError, match="ReentrantCallbackGroup"):
                StereoSubscriber(node, lambda *m: None, backend=backend, callback_group=ReentrantCallbackGroup())
        assert len(list(node.subscriptions)) == 0  # refused before any subscription was made
    finally:
        node.destroy_node()


def _message_filters_stand_in(node_subscriptions: list) -> Any:
    """A ``message_filters`` module with its documented Python API (Subscriber(node, type, topic,
    qos_profile=...), ``.sub``, registerCallback, TimeSynchronizer(fs, queue_size),
    ApproximateTimeSynchronizer(fs, queue_size, slop)), pairing with our own policies, so the
    StereoSubscriber's message_filters plumbing runs over real topics where the package is absent."""
    import types

    module = types.ModuleType("message_filters")
    exact_policy, approximate_policy = ExactTimeSynchronizer, ApproximateTimeSynchronizer  # ours

    class Subscriber:
        def __init__(self, node: Any, msg_type: Any, topic: str, **kwargs: Any) -> None:
            self.callbacks: list = []
            self.topic, self.kwargs = topic, kwargs
            self.sub = node.create_subscription(msg_type, topic, self._signal, kwargs.pop("qos_profile"), **kwargs)
            node_subscriptions.append(self)

        def registerCallback(self, callback: Any, *args: Any) -> None:
            self.callbacks.append((callback, args))

        def _signal(self, msg: Any) -> None:
            for callback, args in self.callbacks:
                callback(msg, *args)

    class _Synchronizer:
        def __init__(self, fs: list, queue_size: int, policy: Any) -> None:
            self.fs, self.queue_size, self.callbacks = fs, queue_size, []
            self._policy = policy
            for index, f in enumerate(fs):
                f.registerCallback(lambda msg, index=index: self._policy.add(index, msg))

        def registerCallback(self, callback: Any) -> None:
            self.callbacks.append(callback)

        def _fire(self, *msgs: Any) -> None:
            for callback in self.callbacks:
                callback(*msgs)

    class MfTimeSynchronizer(_Synchronizer):
        def __init__(self, fs: list, queue_size: int) -> None:
            super().__init__(fs, queue_size, exact_policy(len(fs), queue_size, lambda *m: self._fire(*m)))

    class MfApproximateTimeSynchronizer(_Synchronizer):
        def __init__(self, fs: list, queue_size: int, slop: float) -> None:
            self.slop = slop
            super().__init__(fs, queue_size, approximate_policy(len(fs), queue_size, slop, lambda *m: self._fire(*m)))

    module.Subscriber, module.TimeSynchronizer, module.ApproximateTimeSynchronizer = (
        Subscriber, MfTimeSynchronizer, MfApproximateTimeSynchronizer)
    return module


@pytest.mark.parametrize("mode", ["exact", "approximate"])
def test_message_filters_backend_plumbing_over_real_topics(ros_context: Any, mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, Image

    from stereo_depth_ros.core.camera import StereoCamera
    from stereo_depth_ros.ros import sync as sync_module
    from stereo_depth_ros.ros.conversions import camera_info_msg, numpy_to_image

    created: list = []
    monkeypatch.setitem(sys.modules, "message_filters", _message_filters_stand_in(created))
    sync_module.message_filters_available.cache_clear()
    try:
        assert sync_module.message_filters_available()
        frames = 5
        prefix = f"/mf_test_{mode}_{os.getpid()}"
        qos = QoSProfile(depth=frames * 2, reliability=ReliabilityPolicy.RELIABLE)
        sub_node = Node("mf_sub", context=ros_context)
        pub_node = Node("mf_pub", context=ros_context)
        received: list = []
        stereo = StereoSubscriber(
            sub_node, lambda *m: received.append(tuple(x.header.stamp.sec for x in m)),
            left_image_topic=f"{prefix}/left", right_image_topic=f"{prefix}/right",
            left_info_topic=f"{prefix}/left_info", right_info_topic=f"{prefix}/right_info",
            qos=qos, queue_size=7, approximate=mode == "approximate", slop=0.005,
        )
        assert stereo.backend == "message_filters"
        # The four inputs in the synchroniser's argument order, with the QoS and parameters given.
        assert [s.topic for s in created] == [f"{prefix}/left", f"{prefix}/right", f"{prefix}/left_info", f"{prefix}/right_info"]
        synchronizer = stereo._mf_synchronizer
        assert synchronizer.fs == created and synchronizer.queue_size == 7
        assert getattr(synchronizer, "slop", None) == (0.005 if mode == "approximate" else None)
        publishers = [pub_node.create_publisher(t, f"{prefix}/{n}", qos) for t, n in (
            (Image, "left"), (Image, "right"), (CameraInfo, "left_info"), (CameraInfo, "right_info"))]
        executor = SingleThreadedExecutor(context=ros_context)
        executor.add_node(sub_node)
        deadline = time.monotonic() + 15.0
        while any(p.get_subscription_count() < 1 for p in publishers) and time.monotonic() < deadline:
            time.sleep(0.02)
        camera = StereoCamera.from_intrinsics(6, 4, 5.0, 0.1)
        for i in range(frames):
            header = camera_info_msg(camera).header
            header.stamp.sec = 200 + i
            right_header = camera_info_msg(camera).header
            right_header.stamp.sec, right_header.stamp.nanosec = 200 + i, (1_000_000 if mode == "approximate" else 0)
            for pub, message in zip(publishers, (numpy_to_image(np.zeros((4, 6), np.uint8), "mono8", header),
                                                 numpy_to_image(np.zeros((4, 6), np.uint8), "mono8", right_header),
                                                 camera_info_msg(camera, header), camera_info_msg(camera, right_header))):
                pub.publish(message)
        while len(received) < frames and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
        assert received == [(200 + i,) * 4 for i in range(frames)]
        stats = stereo.stats()
        assert stats["backend"] == "message_filters" and stats["matched"] == frames
        assert all(stats["inputs"][n]["received"] == frames and stats["inputs"][n]["dropped_late"] is None for n in STEREO_INPUTS)
        subscriptions_before = len(list(sub_node.subscriptions))
        stereo.destroy()
        assert len(list(sub_node.subscriptions)) == subscriptions_before - 4
        executor.shutdown()
        sub_node.destroy_node()
        pub_node.destroy_node()
    finally:
        sync_module.message_filters_available.cache_clear()
