"""Cadence: a step clock that fires on crossing multiples of N (checked by enumeration) and a time clock."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from estimator.cadence import Cadence


@given(st.integers(1, 50), st.lists(st.integers(1, 30), min_size=1, max_size=30), st.integers(0, 100))
def test_steps_due_exactly_when_a_multiple_lies_in_the_calls_range(every, calls, start):
    cadence, step = Cadence(every, step=start), start
    for size in calls:
        step += size
        want = any(s % every == 0 for s in range(cadence.last_step + 1, step + 1))
        assert cadence.steps_due(step) == want
        if want:
            last = cadence.last_step
            assert cadence.fire(step, now=0.0)[0] == step - last and cadence.last_step == step


def test_time_clock_and_fire():
    cadence = Cadence(None, every_secs=10.0, step=5, now=100.0)
    assert not cadence.steps_due(10**6)  # no step clock
    assert not cadence.due(6, now=109.9) and cadence.due(6, now=110.0)
    assert cadence.fire(9, now=112.0) == (4, 12.0)
    assert not cadence.secs_due(now=121.9) and cadence.secs_due(now=122.0)
    assert not Cadence(0, None).due(10)  # 0 and None: never
