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
    # set-up does not count: measuring starts at the first quiet moment
    gov.busy()
    gov.quiet()
    gov.busy()
    return gov


def run(gov: Governor, clock: FakeClock, tasks: int, *, on: float, off: float) -> list[bool]:
    """Complete ``tasks`` tasks, each costing ``on`` or ``off`` seconds depending on the
    helpers' state when it starts; the helpers' state after each task."""
    states = []
    for _ in range(tasks):
        clock.advance(on if gov.helpers else off)
        gov.completed()
        states.append(gov.helpers)
    return states


def test_setup_work_is_not_measured():
    clock = FakeClock()
    gov = Governor(now=clock.now, window_tasks=1, window_s=0.0)
    gov.busy()
    for _ in range(100):
        clock.advance(1.0)
        assert not gov.completed()
    assert gov.helpers and not gov.decisions


def test_probe_alternates_windows_then_turns_helpers_off_when_that_is_cheaper():
    clock = FakeClock()
    gov = make(clock)
    states = run(gov, clock, 16, on=3.0, off=1.0)
    # four windows of four tasks: on, off, on, then off until the decision keeps it off
    assert states == [True] * 3 + [False] * 4 + [True] * 4 + [False] * 5
    assert gov.decisions[-1] == (3.0, 1.0, False)


@pytest.mark.parametrize(("on", "off", "kept"), [(1.0, 3.0, True), (1.0, 0.95, True)])
def test_helpers_stay_on_unless_off_is_clearly_cheaper(on, off, kept):
    clock = FakeClock()
    gov = make(clock, margin=0.1)
    run(gov, clock, 16, on=on, off=off)
    assert gov.helpers is kept
    assert gov.decisions[-1] == (pytest.approx(on), pytest.approx(off), kept)


@given(
    on=st.floats(0.001, 10.0),
    off=st.floats(0.001, 10.0),
    margin=st.floats(0.0, 0.9),
)
def test_decision_matches_the_rule(on, off, margin):
    clock = FakeClock()
    gov = make(clock, margin=margin)
    run(gov, clock, 16, on=on, off=off)
    cost_on, cost_off, helpers = gov.decisions[-1]
    assert cost_on == pytest.approx(on) and cost_off == pytest.approx(off)
    assert helpers is (not cost_off < cost_on * (1 - margin))


def test_hold_lasts_its_factor_of_the_probe_then_probes_again_helpers_first():
    clock = FakeClock()
    gov = make(clock, hold_factor=2.0)
    run(gov, clock, 16, on=3.0, off=1.0)  # probe: 8 x 3 s + 8 x 1 s = 32 s of work
    assert not gov.helpers
    assert run(gov, clock, 63, on=3.0, off=1.0) == [False] * 63  # 63 s held
    run(gov, clock, 1, on=3.0, off=1.0)  # the 64th second ends the hold
    assert gov.helpers
    run(gov, clock, 16, on=1.0, off=3.0)  # the work changed: helpers pay now
    assert gov.helpers and gov.decisions[-1] == (1.0, 3.0, True)


def test_a_window_needs_its_tasks_and_its_seconds():
    clock = FakeClock()
    gov = make(clock, window_tasks=2, window_s=5.0)
    assert run(gov, clock, 4, on=1.0, off=1.0) == [True] * 4  # 4 s: too short
    assert run(gov, clock, 1, on=1.0, off=1.0) == [False]  # 5 tasks, 5 s
    assert run(gov, clock, 1, on=10.0, off=10.0) == [False]  # one task: too few
    assert run(gov, clock, 1, on=10.0, off=10.0) == [True]


def test_quiet_spells_do_not_count():
    clock = FakeClock()
    gov = make(clock)
    for helpers_cost in (3.0, 1.0, 3.0, 1.0):
        for _ in range(4):
            clock.advance(helpers_cost)
            gov.completed()
        gov.quiet()  # between rounds: nothing queued or running
        clock.advance(1000.0)
        gov.busy()
    assert gov.decisions[-1] == (3.0, 1.0, False)


@pytest.mark.parametrize(
    "kw",
    [{"window_tasks": 0}, {"pairs": 0}, {"window_s": -1.0}, {"hold_factor": -1.0}, {"margin": 1.0}],
)
def test_bad_settings_are_refused(kw):
    with pytest.raises(ValueError, match=next(iter(kw))):
        Governor(**kw)
