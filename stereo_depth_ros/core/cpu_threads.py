"""Choosing the frame path's CPU thread count while it runs, for a CPU that others share.

PyTorch's CPU kernels run as OpenMP teams. A team of N threads finishes a parallel region only when
its slowest member does, so when another process takes one of the cores, every region waits for the
team member the scheduler has descheduled, and GNU OpenMP's spin-waiting members burn the time the
late one needs. Measured on the 2-core development machine, the node at 320x240 with a 30 Hz camera
(``stereo_depth_bench_node --sizes 320x240 --rate 30``, adaptation off; ``docs/performance.md``):

=======================  ==============  ===================================
setting                  alone frames/s  next to a process busy on one core
=======================  ==============  ===================================
2 threads (torch's)      7.4             2.2
``OMP_WAIT_POLICY=PASSIVE`` 6.3          4.7
1 thread                 6.1             5.3
=======================  ==============  ===================================

No fixed setting is best in both cases, so :class:`ThreadCountTuner` measures: it runs the frame
path at each candidate count in turn, keeps the fastest, and re-tries the others now and then
because the load on a robot's CPU changes.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Sequence

__all__ = ["ThreadCountTuner"]


class ThreadCountTuner:
    """Pick the thread count with the lowest recent frame time, re-trying the others periodically.

    Usage, in the thread that runs the frames::

        threads = tuner.threads()          # set torch.set_num_threads(threads) when it changed
        ... process one frame, taking `seconds` ...
        tuner.record(threads, seconds)

    Args:
        candidates: thread counts to choose from, each >= 1 (e.g. ``(1, os.cpu_count())``).
        trial_frames: frames measured per candidate in a trial; the first of them is not counted
            (it pays for growing or shrinking the OpenMP team).
        retry_every: frames at the chosen count between two trials of all candidates.
    """

    def __init__(self, candidates: Sequence[int], trial_frames: int = 4, retry_every: int = 100) -> None:
        counts = sorted(set(int(c) for c in candidates))
        if not counts or counts[0] < 1:
            raise ValueError(f"candidates: expected thread counts >= 1, got {list(candidates)!r}")
        if trial_frames < 2:
            raise ValueError(f"trial_frames: expected >= 2 (the first frame of a trial is not counted), got {trial_frames}")
        if retry_every < 1:
            raise ValueError(f"retry_every: expected >= 1 frames, got {retry_every}")
        self.candidates: tuple[int, ...] = tuple(counts)
        self.trial_frames = trial_frames
        self.retry_every = retry_every
        self._chosen = counts[-1]
        self._trial: deque[int] = deque()  # candidates still to try in this trial
        self._samples: dict[int, list[float]] = {}
        self._frames_since_trial = 0
        self.trials = 0
        self.changes = 0
        self.last_medians: dict[int, float] = {}
        if len(counts) > 1:
            self._start_trial()

    @property
    def chosen(self) -> int:
        """The count used between trials."""
        return self._chosen

    def _start_trial(self) -> None:
        # The current choice goes last so that the trial ends where it started if nothing changed.
        order = [c for c in self.candidates if c != self._chosen] + [self._chosen]
        self._trial = deque(order)
        self._samples = {c: [] for c in self.candidates}
        self.trials += 1

    def threads(self) -> int:
        """The thread count for the next frame."""
        return self._trial[0] if self._trial else self._chosen

    def record(self, threads: int, seconds: float) -> None:
        """Report that a frame run at ``threads`` took ``seconds`` (wall time of the frame path)."""
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"seconds: expected a finite duration >= 0, got {seconds!r}")
        if self._trial:
            if threads != self._trial[0]:
                return  # a frame started before the switch
            samples = self._samples[threads]
            samples.append(seconds)
            if len(samples) >= self.trial_frames:
                self._trial.popleft()
                if not self._trial:
                    self._finish_trial()
            return
        self._frames_since_trial += 1
        if self._frames_since_trial >= self.retry_every and len(self.candidates) > 1:
            self._frames_since_trial = 0
            self._start_trial()

    def _finish_trial(self) -> None:
        medians = {c: sorted(s[1:])[len(s[1:]) // 2] for c, s in self._samples.items() if len(s) > 1}
        self.last_medians = medians
        best = min(medians, key=lambda c: (medians[c], -c))
        if best != self._chosen:
            self.changes += 1
        self._chosen = best
