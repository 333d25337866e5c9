"""The pool's governor on a fake clock: its decisions follow the measured cost a task."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consortium.clock import FakeClock
from consortium.runtime.governor import Governor


def make(clock: FakeClock, **kw: float) -> Governor:
    settings = {"window_tasks": 4, "window_s": 0.0, "pairs": 2, "hold_factor": 10.0}
    settings.update(kw)
    gov = Governor(now=clock.now, **settings)  # type: ignore[arg-type]
    gov.quiet()  # set-up does not count: measuring starts after the first quiet moment
    return gov


def rounds(
    gov: Governor,
    clock: FakeClock,
    count: int,
    *,
    tasks: int,
    on: float,
    off: float,
    after: tuple[float, float] = (0.0, 0.0),
) -> list[bool]:
    """``count`` rounds of ``tasks`` tasks, each costing ``on`` or ``off`` seconds as the
    helpers are, then a quiet spell of ``after`` (with helpers, without: the hub's own work
    until it queues the next round); the helpers' state in each round."""
    states = []
    for _ in range(count):
        gov.busy()  # the round's first task is queued
        states.append(gov.helpers)
        for _ in range(tasks):
            clock.advance(on if gov.helpers else off)
            gov.completed()
        gov.quiet()
        clock.advance(after[0] if gov.helpers else after[1])
    return states


def test_setup_work_is_not_measured():
    clock = FakeClock()
    gov = Governor(now=clock.now, window_tasks=1, window_s=0.0)
    assert not gov.busy()
    for _ in range(100):
        clock.advance(1.0)
        assert not gov.completed()
    assert gov.helpers and not gov.decisions


def test_probe_alternates_whole_rounds_then_turns_helpers_off_when_that_is_cheaper():
    clock = FakeClock()
    gov = make(clock, window_s=1.0)
    # a window ends when a round starts after 4 tasks and 1 s: every round here; off is
    # 20% cheaper, not a clear cut after one pair, so the probe takes both
    states = rounds(gov, clock, 6, tasks=4, on=1.25, off=1.0)
    assert states == [True, False, True, False, False, False]
    assert gov.decisions[-1] == (1.25, 1.0, False)


@pytest.mark.parametrize(("on", "off", "kept"), [(3.0, 1.0, False), (1.0, 3.0, True)])
def test_a_clear_cut_first_pair_ends_the_probe(on, off, kept):
    clock = FakeClock()
    gov = make(clock, decisive=0.3)
    assert rounds(gov, clock, 5, tasks=4, on=on, off=off) == [True, False] + [kept] * 3
    assert gov.decisions[-1] == (on, off, kept)
    assert len(gov.decisions) == 1


def test_after_an_early_end_the_hold_is_as_long_as_after_a_whole_probe():
    clock = FakeClock()
    gov = make(clock, hold_factor=1.0)
    # probe: 12 s on, 4 s off, a clear cut; a whole probe would have taken 32 s
    rounds(gov, clock, 2, tasks=4, on=3.0, off=1.0)
    assert rounds(gov, clock, 8, tasks=4, on=3.0, off=1.0) == [False] * 8  # 32 s held
    assert rounds(gov, clock, 1, tasks=4, on=3.0, off=1.0) == [True]  # probing again


def test_what_the_hub_does_after_a_round_counts_with_that_round():
    """A hub that works 8 s after each round's last reply, 10 s when the helpers were on:
    the helpers cost more although the tasks themselves cost the same."""
    clock = FakeClock()
    gov = make(clock, window_s=1.0)
    rounds(gov, clock, 5, tasks=4, on=1.0, off=1.0, after=(10.0, 8.0))
    cost_on, cost_off, helpers = gov.decisions[-1]
    assert (cost_on, cost_off, helpers) == (pytest.approx(3.5), pytest.approx(3.0), False)


@pytest.mark.parametrize(("on", "off", "kept"), [(1.0, 3.0, True), (1.0, 0.95, True)])
def test_helpers_stay_on_unless_off_is_clearly_cheaper(on, off, kept):
    clock = FakeClock()
    gov = make(clock, margin=0.1)
    rounds(gov, clock, 4, tasks=4, on=on, off=off)
    assert gov.helpers is kept
    assert gov.decisions[-1] == (pytest.approx(on), pytest.approx(off), kept)


@given(
    on=st.floats(0.001, 10.0),
    off=st.floats(0.001, 10.0),
    margin=st.floats(0.0, 0.9),
    tasks=st.integers(4, 40),
)
def test_decision_matches_the_rule(on, off, margin, tasks):
    clock = FakeClock()
    gov = make(clock, margin=margin)
    rounds(gov, clock, 4, tasks=tasks, on=on, off=off)
    cost_on, cost_off, helpers = gov.decisions[-1]
    assert cost_on == pytest.approx(on) and cost_off == pytest.approx(off)
    assert helpers is (not cost_off < cost_on * (1 - margin))


def test_hold_lasts_its_factor_of_the_probe_then_probes_again_helpers_first():
    clock = FakeClock()
    gov = make(clock, hold_factor=2.0)
    rounds(gov, clock, 4, tasks=4, on=1.25, off=1.0)  # probe: 2 x 5 s + 2 x 4 s = 18 s
    assert rounds(gov, clock, 9, tasks=4, on=1.25, off=1.0) == [False] * 9  # 36 s held
    # the work changed: helpers pay now, and the next probe finds it
    assert rounds(gov, clock, 5, tasks=4, on=1.0, off=1.25) == [True, False, True, False, True]
    assert gov.decisions[-1] == (1.0, 1.25, True)


def test_a_window_needs_its_seconds():
    clock = FakeClock()
    gov = make(clock, window_tasks=1, window_s=5.0)
    # rounds of 2 s: the first window ends as the fourth round starts (6 s)
    assert rounds(gov, clock, 4, tasks=2, on=1.0, off=1.0) == [True, True, True, False]


def test_a_window_needs_its_tasks():
    clock = FakeClock()
    gov = make(clock, window_tasks=5, window_s=1.0)
    # rounds of two tasks: the first window ends as the fourth round starts (6 tasks)
    assert rounds(gov, clock, 4, tasks=2, on=1.0, off=1.0) == [True, True, True, False]


def test_work_that_is_never_quiet_ends_its_windows_at_a_task():
    clock = FakeClock()
    gov = make(clock, window_tasks=1, window_s=0.25)
    gov.busy()
    changes = []
    for _ in range(40):  # never quiet: a window ends at a task after 20 x 0.25 s
        clock.advance(1.0 if gov.helpers else 0.8)
        if gov.completed():
            changes.append(gov.helpers)
    assert changes[:3] == [False, True, False]
    assert gov.decisions[0] == (1.0, pytest.approx(0.8), False)


@pytest.mark.parametrize(
    "kw",
    [
        {"window_tasks": 0},
        {"pairs": 0},
        {"window_s": -1.0},
        {"hold_factor": -1.0},
        {"margin": 1.0},
        {"decisive": 1.0},
    ],
)
def test_bad_settings_are_refused(kw):
    with pytest.raises(ValueError, match=next(iter(kw))):  # the message names the setting
        Governor(**kw)
