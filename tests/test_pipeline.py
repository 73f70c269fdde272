"""The long-CoT pipeline's held-out comparison: the gain and its standard error, paired by problem."""

from __future__ import annotations

import pytest

from k15.app.pipeline import paired_difference


def test_paired_difference_against_hand_values() -> None:
    before = {"a": 0.0, "b": 0.5, "c": 1.0, "d": 0.25}
    after = {"a": 1.0, "b": 0.5, "c": 0.5, "d": 0.75, "extra": 1.0}  # only problems in both count
    result = paired_difference(before, after)
    # differences 1, 0, -0.5, 0.5: mean 0.25, squared deviations sum to 1.25; sample std over sqrt(4)
    assert result["gain"] == pytest.approx(0.25)
    assert result["paired_se"] == pytest.approx((1.25 / 3) ** 0.5 / 2)
    assert (result["problems"], result["better"], result["worse"]) == (4, 2, 1)
    assert paired_difference({"a": 0.5}, {"a": 1.0})["paired_se"] == 0.0
