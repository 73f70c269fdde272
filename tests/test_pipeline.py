"""The long-CoT pipeline: the held-out gain and its standard error paired by problem; the demo data config."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from k15.app.pipeline import DemoDataConfig, paired_difference


def test_paired_difference_against_hand_values() -> None:
    before = {"a": 0.0, "b": 0.5, "c": 1.0, "d": 0.25}
    after = {"a": 1.0, "b": 0.5, "c": 0.5, "d": 0.75, "extra": 1.0}  # only problems in both count
    result = paired_difference(before, after)
    # differences 1, 0, -0.5, 0.5: mean 0.25, squared deviations sum to 1.25; sample std over sqrt(4)
    assert result["gain"] == pytest.approx(0.25)
    assert result["paired_se"] == pytest.approx((1.25 / 3) ** 0.5 / 2)
    assert (result["problems"], result["better"], result["worse"]) == (4, 2, 1)
    assert paired_difference({"a": 0.5}, {"a": 1.0})["paired_se"] == 0.0


def test_demo_data_levels_are_checked_against_the_task() -> None:
    assert DemoDataConfig(task="countdown", levels=[1, 2]).levels == [1, 2]
    assert DemoDataConfig(task="arith").levels is None  # all of the task's levels
    with pytest.raises(ValidationError, match=r"levels of countdown are 1, 2, 3, 4; got \[5\]"):
        DemoDataConfig(task="countdown", levels=[5])
    with pytest.raises(ValidationError, match="levels of arith"):
        DemoDataConfig(task="arith", levels=[])


def test_min_budget_is_a_countdown_setting_passed_to_its_generator(tmp_path) -> None:
    from k15.train.data import demo_splits

    d = DemoDataConfig(task="countdown", levels=[1], train=5, heldout=5, sft=60, min_budget=3)
    paths = demo_splits(d.task)(tmp_path, train=d.train, heldout=d.heldout, sft=d.sft, levels=d.levels,
                                **d.splits_options())  # fmt: skip
    assert len(paths["sft"].read_text().splitlines()) == 60, "traces that give up are kept too"
    assert DemoDataConfig(task="countdown").splits_options() == {}
    with pytest.raises(ValidationError, match="min_budget is a countdown setting; the demo task here is arith"):
        DemoDataConfig(task="arith", min_budget=3)
