import pytest

from stereo_depth_ros.core.cpu_threads import ThreadCountTuner


def run(tuner: ThreadCountTuner, frame_seconds, frames: int) -> list[int]:
    """Feed ``frames`` frames whose time depends on the thread count; return the counts used."""
    used = []
    for _ in range(frames):
        threads = tuner.threads()
        used.append(threads)
        tuner.record(threads, frame_seconds(threads))
    return used


def test_keeps_all_cores_alone_and_one_thread_on_a_shared_cpu():
    tuner = ThreadCountTuner((1, 2), trial_frames=3, retry_every=20)
    alone = {1: 0.164, 2: 0.136}  # the node's measured 320x240 frame times (docs/performance.md)
    used = run(tuner, alone.__getitem__, 6)
    assert used == [1, 1, 1, 2, 2, 2] and tuner.chosen == 2
    assert run(tuner, alone.__getitem__, 20) == [2] * 20
    shared = {1: 0.187, 2: 0.359}  # another process busy on one core
    run(tuner, shared.__getitem__, 6)  # the next trial (after retry_every frames) finds the change
    assert tuner.chosen == 1 and tuner.changes == 1 and tuner.trials == 2
    assert set(run(tuner, shared.__getitem__, 19)) == {1}


def test_the_first_frame_of_each_trial_is_not_counted():
    tuner = ThreadCountTuner((1, 4), trial_frames=2, retry_every=50)
    times = iter([9.0, 0.5, 0.1, 0.2])  # threads 1: 9.0 (switching cost), 0.5; threads 4: 0.1, 0.2
    run(tuner, lambda t: next(times), 4)
    assert tuner.last_medians == {1: 0.5, 4: 0.2} and tuner.chosen == 4


def test_a_single_candidate_never_trials_and_bad_arguments_raise():
    tuner = ThreadCountTuner((3,))
    assert run(tuner, lambda t: 1.0, 300) == [3] * 300 and tuner.trials == 0
    with pytest.raises(ValueError, match="thread counts >= 1"):
        ThreadCountTuner((0, 2))
    with pytest.raises(ValueError, match="trial_frames"):
        ThreadCountTuner((1, 2), trial_frames=1)
    with pytest.raises(ValueError, match="finite duration"):
        ThreadCountTuner((1, 2)).record(1, float("nan"))
