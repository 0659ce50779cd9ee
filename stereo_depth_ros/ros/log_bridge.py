"""Python logging of the ROS-free core, forwarded to the node's ROS logger (``/rosout``), throttled.

The core logs through Python's :mod:`logging` (it imports no rclpy): adaptation rollbacks, weights
that fail to load, ... Without a bridge those lines go to stderr only, unthrottled (192 rollback
lines in a 2500-frame run), and never reach ``/rosout``, ``ros2 topic echo /rosout`` or rqt_console.
:class:`RosLogBridge` is a :class:`logging.Handler` that the node attaches to the
``stereo_depth_ros`` logger: each kind of message (logger, level and format string) is passed to
the ROS logger at most once per ``throttle_s`` seconds, the next one saying how many were held
back, and every record is counted by level for ``/diagnostics``.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Any

__all__ = ["RosLogBridge"]


class RosLogBridge(logging.Handler):
    """Forward log records to an rclpy logger, throttled per kind of message.

    Args:
        ros_logger: the node's logger (``node.get_logger()``).
        throttle_s: at most one line per kind of message in this many seconds.
    """

    def __init__(self, ros_logger: Any, throttle_s: float = 5.0) -> None:
        super().__init__(level=logging.INFO)
        if not throttle_s >= 0:
            raise ValueError(f"throttle_s: expected seconds >= 0, got {throttle_s}")
        self._ros = ros_logger
        self._throttle = float(throttle_s)
        self._lock_counts = threading.Lock()
        self._last: dict[tuple[str, int, str], float] = {}
        self._held: collections.Counter = collections.Counter()
        self.counts: collections.Counter = collections.Counter()  # by level name: WARNING, ERROR, ...

    def emit(self, record: logging.LogRecord) -> None:
        key = (record.name, record.levelno, str(record.msg))
        now = time.monotonic()
        with self._lock_counts:
            self.counts[record.levelname] += 1
            last = self._last.get(key)
            if last is not None and now - last < self._throttle:
                self._held[key] += 1
                return
            self._last[key] = now
            held, self._held[key] = self._held[key], 0
        try:
            text = f"[{record.name.rsplit('.', 1)[-1]}] {record.getMessage()}"
            if held:
                text += f" ({held} more like it in the last {self._throttle:g} s)"
            if record.exc_info:
                text += "\n" + self.format(record).split("\n", 1)[-1]
        except Exception:  # noqa: BLE001 - a bad format string must not break the caller
            self.handleError(record)
            return
        if record.levelno >= logging.ERROR:
            self._ros.error(text)
        elif record.levelno >= logging.WARNING:
            self._ros.warning(text)
        else:
            self._ros.info(text)

    def snapshot(self) -> dict[str, int]:
        """Records seen so far by level name (for diagnostics)."""
        with self._lock_counts:
            return dict(self.counts)
