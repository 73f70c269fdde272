from __future__ import annotations

import json

import pytest

from train.partial_rollouts import ReplayBuffer, Trajectory, degenerate_repetition


def test_continuation_keeps_context_and_masks_earlier_segments() -> None:
    trajectory = Trajectory(problem=3, sample=1, prompt_ids=[1, 2])
    trajectory.segments.append([10, 11, 12])  # iteration i: budget ran out
    buffer = ReplayBuffer()
    buffer.add(trajectory)
    (resumed,) = buffer.take(4)
    assert resumed.context_ids() == [1, 2, 10, 11, 12]  # the next iteration continues from here
    resumed.segments.append([13, 14])  # iteration i+1 (the new policy)
    assert resumed.response_ids == [10, 11, 12, 13, 14]
    assert resumed.loss_mask() == [0, 0, 0, 1, 1]
    assert len(buffer) == 0


def test_buffer_is_fifo_and_survives_a_json_round_trip() -> None:
    buffer = ReplayBuffer()
    for i in range(3):
        buffer.add(Trajectory(problem=i, sample=0, prompt_ids=[i], segments=[[i, i]]))
    restored = ReplayBuffer()
    restored.load_state_dict(json.loads(json.dumps(buffer.state_dict())))
    assert [t.problem for t in restored.take(2)] == [0, 1]
    assert [t.problem for t in restored.take(5)] == [2]


def test_finished_trajectories_are_refused() -> None:
    with pytest.raises(ValueError, match="only unfinished"):
        ReplayBuffer().add(Trajectory(problem=0, sample=0, prompt_ids=[], finished=True))


@pytest.mark.parametrize(
    ("ids", "expected"),
    [
        ([7] * 64, True),  # one token over and over
        (list(range(50)) + [1, 2, 3, 4] * 16, True),  # a 4-token loop covering 64 tokens
        (list(range(20)) * 8, True),  # a 20-token sentence repeated 8 times
        ([1, 2, 3, 4] * 15, False),  # too short to call it degenerate
        (list(range(200)), False),
        ([1, 2, 3, 4] * 20 + [9], False),  # the loop was broken at the end
    ],
)
def test_degenerate_repetition(ids: list[int], expected: bool) -> None:
    assert degenerate_repetition(ids) is expected
