"""Stereo message synchronisation with ``message_filters`` semantics.

Two layers:

* :class:`ExactTimeSynchronizer` and :class:`ApproximateTimeSynchronizer`: pure Python, no rclpy.
  They take messages (anything with ``header.stamp``, or an explicit stamp in nanoseconds) on ``N``
  numbered inputs and call the registered callbacks with one message per input.
* :class:`StereoSubscriber`: creates the four subscriptions (left/right image, left/right
  camera_info) on a node and feeds a synchroniser: ``message_filters.TimeSynchronizer`` /
  ``ApproximateTimeSynchronizer`` on ``message_filters.Subscriber`` s when ``message_filters`` is
  importable (an apt ROS install), the classes of this module otherwise (or on request).

Semantics of the built-in synchronisers (stamps are compared as integer nanoseconds):

* Each input keeps a queue of at most ``queue_size`` messages ordered by stamp. A message whose
  stamp is already queued on that input replaces the queued one (``dropped_duplicate``); when a queue
  overflows its oldest-stamped message is dropped (``dropped_overflow``).
* Exact: a set fires as soon as every input holds a message with the same stamp ``t``. The set is
  removed and every queued message with stamp ``< t`` is discarded (``dropped_unmatched``); later
  arrivals with stamp ``<= t`` are discarded on arrival (``dropped_late``), so outputs are strictly
  increasing in time. This is the C++ ``ExactTime`` policy; the Python ``message_filters``
  TimeSynchronizer differs in keeping older unmatched messages until the queue pushes them out.
* Approximate (``slop`` seconds): after every arrival the synchroniser looks for a set of one queued
  message per input whose stamps span at most ``slop`` (inclusive) and fires the earliest one: the
  set whose oldest stamp ``s`` is smallest, taking on every input the earliest message in
  ``[s, s + slop]``. Used messages and everything older on each input are removed (older ones count
  as ``dropped_unmatched``); an arrival not newer than the last message used on its input is
  ``dropped_late``. Repeats until no set is left.
* Time jumps (both policies): an arrival more than ``jump_threshold`` seconds *older* than the last
  message used on its input is not a late message but time starting over (a bag played with
  ``--loop``, a simulator reset). The synchroniser forgets its queues and last-used stamps (its
  counters stay), counts the jump (``time_jumps``), calls the ``on_time_jump`` callbacks with
  ``(new stamp, previous stamp)`` in nanoseconds, and carries on with the new timeline.

  Differences from message_filters' C++ ``ApproximateTime`` (the adaptive algorithm of
  message_filters): that policy looks for the set with the *smallest span* and waits until it can
  prove no later arrival would give a better set (every input has a message past the pivot, or the
  inter-message lower bounds say so), treating ``max_interval_duration`` only as an upper bound.
  Ours fires greedily as soon as any set within ``slop`` exists, so a slightly better partner that
  arrives later is not used; with hardware-synchronised cameras (identical or jitter-only stamps, a
  frame period larger than ``slop``) both choose the same sets. The Python message_filters
  ``ApproximateTimeSynchronizer`` is greedy too, but searches around the newest message, uses a
  strict ``span < slop`` and does not drop older messages.

Callbacks run while the synchroniser's lock is held (as in message_filters): they are serialised and
see sets in time order; a slow callback delays other inputs' ``add`` calls but loses nothing except
through the queue bounds.
"""

from __future__ import annotations

import bisect
import functools
import math
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Literal, Sequence

if TYPE_CHECKING:  # pragma: no cover
    from rclpy.callback_groups import CallbackGroup
    from rclpy.node import Node
    from rclpy.qos import QoSProfile

__all__ = [
    "SyncError",
    "SyncStats",
    "stamp_to_ns",
    "ExactTimeSynchronizer",
    "ApproximateTimeSynchronizer",
    "message_filters_available",
    "StereoSubscriber",
    "STEREO_INPUTS",
]

SyncCallback = Callable[..., None]
STEREO_INPUTS: tuple[str, ...] = ("left_image", "right_image", "left_info", "right_info")


class SyncError(ValueError):
    """Bad synchroniser configuration or a message without a usable ``header.stamp``."""


def stamp_to_ns(msg: Any) -> int:
    """``msg.header.stamp`` as integer nanoseconds.

    Raises:
        SyncError: the message has no ``header.stamp`` with ``sec`` and ``nanosec``.
    """
    try:
        stamp = msg.header.stamp
        return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)
    except AttributeError:
        raise SyncError(
            f"message: expected a header.stamp (builtin_interfaces/Time), got {type(msg).__name__}"
        ) from None


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SyncError(f"{name}: expected an integer >= 1, got {value!r}")
    return value


def _slop_seconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise SyncError(f"slop: expected a finite number of seconds >= 0, got {value!r}")
    return float(value)


@dataclass
class SyncStats:
    """Counters of one synchroniser, per input where a list (index = input number).

    Attributes:
        received: messages passed to ``add``.
        matched: sets delivered to the callbacks.
        dropped_overflow: dropped because the input's queue exceeded ``queue_size`` (oldest first).
        dropped_unmatched: discarded unused because a newer set fired.
        dropped_late: arrived with a stamp not newer than the last set used on that input.
        dropped_duplicate: replaced by a later message with the same stamp on the same input.
        queued: messages waiting now.
        time_jumps: arrivals that started a new timeline (see the module docstring).
        last_receive_monotonic: ``time.monotonic()`` of the last arrival (None before the first); a
            node compares it with now to report a missing or stale camera_info.
    """

    received: list[int]
    matched: int
    dropped_overflow: list[int]
    dropped_unmatched: list[int]
    dropped_late: list[int]
    dropped_duplicate: list[int]
    queued: list[int]
    last_receive_monotonic: list[float | None] = field(default_factory=list)
    time_jumps: int = 0

    @property
    def dropped(self) -> list[int]:
        """All drops per input."""
        return [sum(v) for v in zip(self.dropped_overflow, self.dropped_unmatched, self.dropped_late,
                                    self.dropped_duplicate)]


class _TimeSynchronizer:
    """Shared queueing, counting and locking; subclasses choose the set to fire."""

    def __init__(self, num_inputs: int, queue_size: int, callback: SyncCallback | None = None,
                 jump_threshold: float = 1.0) -> None:
        self.num_inputs = _positive_int("num_inputs", num_inputs)
        self.queue_size = _positive_int("queue_size", queue_size)
        if isinstance(jump_threshold, bool) or not isinstance(jump_threshold, (int, float)) or not jump_threshold > 0:
            raise SyncError(f"jump_threshold: expected a positive number of seconds, got {jump_threshold!r}")
        self.jump_threshold_ns = int(round(float(jump_threshold) * 1e9))
        self._lock = threading.RLock()
        self._callbacks: list[SyncCallback] = []
        self._jump_callbacks: list[Callable[[int, int], None]] = []
        self._time_jumps = 0
        if callback is not None:
            self.register_callback(callback)
        self._reset_state()

    # ------------------------------------------------------------------ public API
    def register_callback(self, callback: SyncCallback) -> None:
        """Call ``callback(msg_0, ..., msg_{N-1})`` for every synchronised set."""
        if not callable(callback):
            raise SyncError(f"callback: expected a callable, got {type(callback).__name__}")
        with self._lock:
            self._callbacks.append(callback)

    def on_time_jump(self, callback: Callable[[int, int], None]) -> None:
        """Call ``callback(new_stamp_ns, previous_stamp_ns)`` when time starts over (a jump back)."""
        if not callable(callback):
            raise SyncError(f"callback: expected a callable, got {type(callback).__name__}")
        with self._lock:
            self._jump_callbacks.append(callback)

    def add(self, index: int, msg: Any, stamp_ns: int | None = None) -> int:
        """Queue ``msg`` on input ``index`` and fire every set that became complete.

        Args:
            index: input number in ``[0, num_inputs)``.
            msg: the message; its stamp is ``msg.header.stamp`` unless ``stamp_ns`` is given.
            stamp_ns: explicit stamp in integer nanoseconds.

        Returns:
            The number of sets fired by this call.

        Raises:
            SyncError: bad index, or no stamp.
        """
        if not 0 <= index < self.num_inputs:
            raise SyncError(f"input index: expected 0..{self.num_inputs - 1}, got {index}")
        stamp = stamp_to_ns(msg) if stamp_ns is None else int(stamp_ns)
        with self._lock:
            self._received[index] += 1
            self._last_receive[index] = time.monotonic()
            last = self._last_used[index]
            if last is not None and last - stamp > self.jump_threshold_ns:
                self._start_over(stamp, last)
            if not self._accept(index, stamp):
                self._dropped_late[index] += 1
                return 0
            self._enqueue(index, stamp, msg)
            fired = 0
            while True:
                chosen = self._find_set()
                if chosen is None:
                    return fired
                msgs = self._take(chosen)
                self._matched += 1
                fired += 1
                for callback in list(self._callbacks):
                    callback(*msgs)

    def input(self, index: int) -> Callable[[Any], int]:
        """``functools.partial(self.add, index)``: a subscription callback for input ``index``."""
        if not 0 <= index < self.num_inputs:
            raise SyncError(f"input index: expected 0..{self.num_inputs - 1}, got {index}")
        return functools.partial(self.add, index)

    def stats(self) -> SyncStats:
        """A snapshot of the counters."""
        with self._lock:
            return SyncStats(
                received=list(self._received),
                matched=self._matched,
                dropped_overflow=list(self._dropped_overflow),
                dropped_unmatched=list(self._dropped_unmatched),
                dropped_late=list(self._dropped_late),
                dropped_duplicate=list(self._dropped_duplicate),
                queued=[len(q) for q in self._stamps],
                last_receive_monotonic=list(self._last_receive),
                time_jumps=self._time_jumps,
            )

    def reset(self) -> None:
        """Forget queued messages, the last fired stamps and the counters (e.g. after a time jump)."""
        with self._lock:
            self._reset_state()

    # ------------------------------------------------------------------ internals
    def _start_over(self, stamp: int, previous: int) -> None:
        """Time jumped back: forget the queues and last-used stamps, keep the counters."""
        n = self.num_inputs
        self._stamps = [[] for _ in range(n)]
        self._msgs = [{} for _ in range(n)]
        self._last_used = [None] * n
        self._time_jumps += 1
        for callback in list(self._jump_callbacks):
            callback(stamp, previous)

    def _reset_state(self) -> None:
        n = self.num_inputs
        self._stamps: list[list[int]] = [[] for _ in range(n)]  # sorted stamps per input
        self._msgs: list[dict[int, Any]] = [{} for _ in range(n)]
        self._last_used: list[int | None] = [None] * n
        self._received = [0] * n
        self._matched = 0
        self._dropped_overflow = [0] * n
        self._dropped_unmatched = [0] * n
        self._dropped_late = [0] * n
        self._dropped_duplicate = [0] * n
        self._last_receive: list[float | None] = [None] * n
        self._time_jumps = 0

    def _accept(self, index: int, stamp: int) -> bool:
        last = self._last_used[index]
        return last is None or stamp > last

    def _enqueue(self, index: int, stamp: int, msg: Any) -> None:
        stamps, msgs = self._stamps[index], self._msgs[index]
        if stamp in msgs:
            self._dropped_duplicate[index] += 1
        else:
            bisect.insort(stamps, stamp)
        msgs[stamp] = msg
        while len(stamps) > self.queue_size:
            del msgs[stamps.pop(0)]
            self._dropped_overflow[index] += 1

    def _take(self, chosen: Sequence[int]) -> list[Any]:
        """Remove the chosen stamp of every input and everything older; return the chosen messages."""
        out = []
        for index, stamp in enumerate(chosen):
            stamps, msgs = self._stamps[index], self._msgs[index]
            cut = bisect.bisect_right(stamps, stamp)
            for old in stamps[: cut - 1]:
                del msgs[old]
            self._dropped_unmatched[index] += cut - 1
            out.append(msgs.pop(stamp))
            del stamps[:cut]
            self._last_used[index] = stamp
        return out

    def _find_set(self) -> list[int] | None:  # pragma: no cover - abstract
        raise NotImplementedError


class ExactTimeSynchronizer(_TimeSynchronizer):
    """Fires when every input holds a message with the same stamp (``message_filters`` ExactTime).

    Args:
        num_inputs: number of inputs ``N``.
        queue_size: messages kept per input (oldest stamp dropped beyond it).
        callback: optional first callback, ``callback(msg_0, ..., msg_{N-1})``.
        jump_threshold: seconds back in time that count as a time jump (module docstring).
    """

    def _find_set(self) -> list[int] | None:
        common = set(self._stamps[0]).intersection(*self._stamps[1:])
        if not common:
            return None
        # Taking stamp t on every input also discards everything older than t and makes later
        # arrivals with stamp <= t late, on every input.
        return [min(common)] * self.num_inputs


class ApproximateTimeSynchronizer(_TimeSynchronizer):
    """Fires the earliest set of one message per input whose stamps span at most ``slop`` seconds.

    See the module docstring for the exact policy and how it differs from message_filters.

    Args:
        num_inputs: number of inputs ``N``.
        queue_size: messages kept per input (oldest stamp dropped beyond it).
        slop: largest allowed ``max(stamp) - min(stamp)`` of a set, seconds (>= 0; 0 = exact).
        callback: optional first callback, ``callback(msg_0, ..., msg_{N-1})``.
        jump_threshold: seconds back in time that count as a time jump (module docstring).
    """

    def __init__(
        self, num_inputs: int, queue_size: int, slop: float, callback: SyncCallback | None = None,
        jump_threshold: float = 1.0,
    ) -> None:
        self.slop = _slop_seconds(slop)
        self.slop_ns = int(round(self.slop * 1e9))
        super().__init__(num_inputs, queue_size, callback, jump_threshold)

    def _find_set(self) -> list[int] | None:
        if any(not stamps for stamps in self._stamps):
            return None
        candidates = sorted({s for stamps in self._stamps for s in stamps})
        for start in candidates:
            end = start + self.slop_ns
            chosen = []
            for stamps in self._stamps:
                i = bisect.bisect_left(stamps, start)
                if i == len(stamps) or stamps[i] > end:
                    break
                chosen.append(stamps[i])
            else:
                return chosen
        return None


# ---------------------------------------------------------------------------------------- ROS helper
@functools.lru_cache(maxsize=1)
def message_filters_available() -> bool:
    """Whether ``message_filters`` (an apt ROS install) can be imported here."""
    try:
        import message_filters  # noqa: F401
    except ImportError:
        return False
    return True


StereoCallback = Callable[[Any, Any, Any, Any], None]


class StereoSubscriber:
    """Subscribes to a rectified stereo pair with camera_info and calls back with synchronised sets.

    ``callback(left_image, right_image, left_info, right_info)`` runs once per set, serialised.

    Args:
        node: the rclpy node that owns the subscriptions.
        callback: called with the four synchronised messages.
        left_image_topic, right_image_topic, left_info_topic, right_info_topic: topic names
            (relative names resolve in the node's namespace; remap as usual).
        qos: QoS of the image subscriptions (default ``qos_profile_sensor_data``: best effort, depth 5).
        info_qos: QoS of the camera_info subscriptions (default: same as ``qos``).
        queue_size: synchroniser queue per input.
        approximate: approximate-time policy with ``slop`` seconds instead of exact stamps.
        slop: see ``approximate``.
        backend: ``"auto"`` (message_filters when importable, else built-in), ``"message_filters"``
            or ``"builtin"``.
        callback_group: for the four subscriptions (default: the node's). It must not run two
            callbacks of one subscription at once, so a ``ReentrantCallbackGroup`` is refused: a
            multi-threaded executor hands a subscription back to the wait set as soon as a message
            is taken, so two messages of one topic could reach the synchroniser out of order, and
            the older one would be dropped as late (or read as time starting over when frames are
            further apart than ``jump_threshold``). A ``MutuallyExclusiveCallbackGroup`` keeps each
            topic in order.
        jump_threshold: seconds back in time that count as a time jump (built-in backend; the
            module docstring); ``on_time_jump(new_stamp_ns, previous_stamp_ns)`` is called then.
        cache_camera_info: synchronise the two images only and hand over the latest camera_info
            received on each side (``None`` before the first), whatever its stamp: for drivers and
            bags that stamp camera_info apart from the images, or publish it once. The callback
            judges its age.

    Raises:
        SyncError: bad queue_size / slop / backend, a ``ReentrantCallbackGroup``; ImportError for
            ``backend="message_filters"`` when it is not installed.
    """

    def __init__(
        self,
        node: "Node",
        callback: StereoCallback,
        left_image_topic: str = "left/image_rect",
        right_image_topic: str = "right/image_rect",
        left_info_topic: str = "left/camera_info",
        right_info_topic: str = "right/camera_info",
        qos: "QoSProfile | None" = None,
        info_qos: "QoSProfile | None" = None,
        queue_size: int = 10,
        approximate: bool = False,
        slop: float = 0.01,
        backend: Literal["auto", "message_filters", "builtin"] = "auto",
        callback_group: "CallbackGroup | None" = None,
        jump_threshold: float = 1.0,
        on_time_jump: Callable[[int, int], None] | None = None,
        cache_camera_info: bool = False,
    ) -> None:
        from rclpy.callback_groups import ReentrantCallbackGroup
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import CameraInfo, Image

        if backend not in ("auto", "message_filters", "builtin"):
            raise SyncError(f"backend: expected 'auto', 'message_filters' or 'builtin', got {backend!r}")
        if isinstance(callback_group, ReentrantCallbackGroup):
            raise SyncError(
                "callback_group: expected a MutuallyExclusiveCallbackGroup or None (the node's default), got a "
                "ReentrantCallbackGroup: it lets a multi-threaded executor hand two messages of one topic to the "
                "synchroniser out of order, and the older one would be dropped"
            )
        if backend == "message_filters" and not message_filters_available():
            raise ImportError("StereoSubscriber(backend='message_filters'): message_filters is not importable")
        self._node = node
        self._callback = callback
        self._count_lock = threading.Lock()
        self._received = [0] * 4
        self._last_receive: list[float | None] = [None] * 4
        self._matched = 0
        self.approximate = bool(approximate)
        self.cache_camera_info = bool(cache_camera_info)
        self._latest_info: list[Any] = [None, None]
        synced = 2 if self.cache_camera_info else 4  # inputs that go through the synchroniser
        self.topics = (left_image_topic, right_image_topic, left_info_topic, right_info_topic)
        image_qos = qos_profile_sensor_data if qos is None else qos
        camera_info_qos = image_qos if info_qos is None else info_qos
        types = (Image, Image, CameraInfo, CameraInfo)
        qoses = (image_qos, image_qos, camera_info_qos, camera_info_qos)
        use_mf = backend == "message_filters" or (backend == "auto" and message_filters_available())
        self.backend = "message_filters" if use_mf else "builtin"
        self._sync: _TimeSynchronizer | None = None
        self._mf_subscribers: list[Any] = []
        self._subscriptions: list[Any] = []
        if use_mf:
            self._init_message_filters(types[:synced], qoses[:synced], queue_size, slop, callback_group)
        else:
            self._sync = (
                ApproximateTimeSynchronizer(synced, queue_size, slop, self._deliver, jump_threshold)
                if self.approximate
                else ExactTimeSynchronizer(synced, queue_size, self._deliver, jump_threshold)
            )
            if on_time_jump is not None:
                self._sync.on_time_jump(on_time_jump)
            for index in range(synced):
                self._subscriptions.append(
                    node.create_subscription(
                        types[index], self.topics[index], functools.partial(self._on_message, index), qoses[index],
                        callback_group=callback_group,
                    )
                )
        for index in range(synced, 4):  # cached camera_info: plain subscriptions keeping the newest
            self._subscriptions.append(
                node.create_subscription(
                    types[index], self.topics[index], functools.partial(self._on_info, index), qoses[index],
                    callback_group=callback_group,
                )
            )

    def _init_message_filters(
        self, types: Sequence[type], qoses: Sequence["QoSProfile"], queue_size: int, slop: float,
        callback_group: "CallbackGroup | None",
    ) -> None:
        import message_filters

        queue_size = _positive_int("queue_size", queue_size)
        slop = _slop_seconds(slop)
        extra = {} if callback_group is None else {"callback_group": callback_group}
        for index, (msg_type, topic, profile) in enumerate(zip(types, self.topics, qoses)):
            subscriber = message_filters.Subscriber(self._node, msg_type, topic, qos_profile=profile, **extra)
            subscriber.registerCallback(functools.partial(self._count, index))
            self._mf_subscribers.append(subscriber)
        if self.approximate:
            synchronizer = message_filters.ApproximateTimeSynchronizer(self._mf_subscribers, queue_size, slop)
        else:
            synchronizer = message_filters.TimeSynchronizer(self._mf_subscribers, queue_size)
        synchronizer.registerCallback(self._deliver)
        self._mf_synchronizer = synchronizer

    # ------------------------------------------------------------------ callbacks
    def _count(self, index: int, _msg: Any = None) -> None:
        with self._count_lock:
            self._received[index] += 1
            self._last_receive[index] = time.monotonic()

    def _on_message(self, index: int, msg: Any) -> None:
        assert self._sync is not None
        self._sync.add(index, msg)

    def _on_info(self, index: int, msg: Any) -> None:
        with self._count_lock:
            self._latest_info[index - 2] = msg
        self._count(index)

    def _deliver(self, left_image: Any, right_image: Any, left_info: Any = None, right_info: Any = None) -> None:
        with self._count_lock:
            self._matched += 1
            if self.cache_camera_info:
                left_info, right_info = self._latest_info
        self._callback(left_image, right_image, left_info, right_info)

    # ------------------------------------------------------------------ diagnostics
    def stats(self) -> dict[str, Any]:
        """Counters for diagnostics.

        Returns:
            ``{"backend", "matched", "inputs": {name: {"topic", "received", "dropped_overflow",
            "dropped_unmatched", "dropped_late", "dropped_duplicate", "queued",
            "last_receive_monotonic"}}, "time_jumps"}`` with names from :data:`STEREO_INPUTS`; with the
            message_filters backend the drop, queue and jump counters are None (it does not expose them).
        """
        inputs: dict[str, dict[str, Any]] = {}
        if self._sync is not None:
            s = self._sync.stats()
            for i, name in enumerate(STEREO_INPUTS[: self._sync.num_inputs]):
                inputs[name] = {
                    "topic": self.topics[i], "received": s.received[i],
                    "dropped_overflow": s.dropped_overflow[i], "dropped_unmatched": s.dropped_unmatched[i],
                    "dropped_late": s.dropped_late[i], "dropped_duplicate": s.dropped_duplicate[i],
                    "queued": s.queued[i], "last_receive_monotonic": s.last_receive_monotonic[i],
                }
            matched = s.matched
            jumps = s.time_jumps
        else:
            jumps = None
            with self._count_lock:
                matched = self._matched
        with self._count_lock:  # inputs outside the built-in synchroniser: counted here
            for i, name in enumerate(STEREO_INPUTS):
                if name not in inputs:
                    inputs[name] = {
                        "topic": self.topics[i], "received": self._received[i], "dropped_overflow": None,
                        "dropped_unmatched": None, "dropped_late": None, "dropped_duplicate": None,
                        "queued": None, "last_receive_monotonic": self._last_receive[i],
                    }
        return {"backend": self.backend, "matched": matched, "time_jumps": jumps, "inputs": inputs}

    def destroy(self) -> None:
        """Destroy the subscriptions (the node stays)."""
        for subscription in self._subscriptions:
            self._node.destroy_subscription(subscription)
        for subscriber in self._mf_subscribers:
            self._node.destroy_subscription(subscriber.sub)
        self._subscriptions, self._mf_subscribers = [], []
