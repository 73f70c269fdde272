from __future__ import annotations

import json

import pytest

from k15.train.rl.partial_rollouts import ReplayBuffer, Trajectory, degenerate_repetition


def test_continuation_keeps_context_and_masks_earlier_segments() -> None:
    trajectory = Trajectory(problem=3, sample=0, prompt_ids=[1, 2], round=4)
    trajectory.extend([10, 11, 12], iteration=4)  # iteration 4: the budget ran out
    buffer = ReplayBuffer()
    buffer.add(trajectory)
    (resumed,) = buffer.take_unfinished()
    assert resumed.context_ids() == [1, 2, 10, 11, 12]  # iteration 5 continues from here
    resumed.extend([13, 14], iteration=5)
    assert resumed.response_ids == [10, 11, 12, 13, 14]
    assert resumed.loss_mask(5) == [0, 0, 0, 1, 1]  # only the current policy's segment trains
    assert resumed.loss_mask(6) == [0] * 5
    assert len(buffer) == 0


def test_groups_train_only_when_all_samples_have_finished() -> None:
    buffer = ReplayBuffer()
    done = Trajectory(problem=1, sample=0, prompt_ids=[1], round=0, finished=True)
    open_ = Trajectory(problem=1, sample=1, prompt_ids=[1], round=0)
    other = Trajectory(problem=2, sample=0, prompt_ids=[2], round=0, finished=True)
    for t in (done, open_, other):
        buffer.add(t)
    assert buffer.pop_complete_groups(group_size=2) == []  # problem 1 waits for sample 1; problem 2 for its mate
    (continued,) = buffer.take_unfinished()
    assert continued is open_
    continued.finished = True
    buffer.add(continued)
    assert buffer.pop_complete_groups(group_size=2) == [[done, continued]]
    assert [t.problem for t in buffer.pending] == [2]


def test_buffer_is_fifo_and_survives_a_json_round_trip() -> None:
    buffer = ReplayBuffer()
    for i in range(3):
        t = Trajectory(problem=i, sample=0, prompt_ids=[i], round=1)
        t.extend([i, i], iteration=1)
        buffer.add(t)
    restored = ReplayBuffer()
    restored.load_state_dict(json.loads(json.dumps(buffer.state_dict())))
    assert [t.problem for t in restored.take_unfinished(2)] == [0, 1]
    (last,) = restored.take_unfinished()
    assert last.segments == [[2, 2]] and last.segment_iterations == [1]


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
