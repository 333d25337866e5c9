"""Replay protection against a plain model: a set of every number seen per channel."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consortium.security import ReplayGuard

JOB = "job:abc"


def test_each_number_is_admitted_once_per_channel():
    guard = ReplayGuard(job=JOB)
    ok = {"job": JOB, "sender": "a", "receiver": "b"}
    assert guard.check(seq=1, **ok) is None
    assert "already received" in (guard.check(seq=1, **ok) or "")
    assert guard.check(seq=1, job=JOB, sender="a", receiver="c") is None  # another channel
    assert guard.check(seq=1, job=JOB, sender="c", receiver="b") is None
    assert guard.check(seq=3, **ok) is None
    assert guard.check(seq=2, **ok) is None  # late but new: inside the window
    assert "already received" in (guard.check(seq=2, **ok) or "")


def test_another_job_and_unnumbered_messages_are_refused():
    guard = ReplayGuard(job=JOB)
    assert "for job 'other'" in (guard.check(job="other", sender="a", receiver="b", seq=1) or "")
    assert "no sequence number" in (guard.check(job=JOB, sender="a", receiver="b", seq=0) or "")
    assert guard.check(job=JOB, sender="a", receiver="b", seq=1) is None  # nothing recorded


def test_numbers_older_than_the_window_are_refused():
    guard = ReplayGuard(job=JOB, window=4)
    ok = {"job": JOB, "sender": "a", "receiver": "b"}
    assert guard.check(seq=10, **ok) is None
    assert guard.check(seq=7, **ok) is None
    assert "too old" in (guard.check(seq=6, **ok) or "")


def test_forget_starts_a_sender_afresh():
    guard = ReplayGuard(job=JOB)
    for receiver in ("b", "c"):
        assert guard.check(job=JOB, sender="a", receiver=receiver, seq=5) is None
    assert guard.check(job=JOB, sender="b", receiver="a", seq=5) is None
    guard.forget("a")
    for receiver in ("b", "c"):
        assert guard.check(job=JOB, sender="a", receiver=receiver, seq=1) is None
    assert guard.check(job=JOB, sender="b", receiver="a", seq=5) is not None  # kept


@pytest.mark.parametrize("bad", [{"job": ""}, {"job": JOB, "window": 0}])
def test_a_guard_needs_a_job_and_a_window(bad):
    with pytest.raises(ValueError):
        ReplayGuard(**bad)


@settings(max_examples=300, deadline=None)
@given(
    st.integers(1, 70),
    st.lists(
        st.tuples(st.sampled_from(["a", "b"]), st.integers(0, 200), st.booleans()), max_size=200
    ),
)
def test_the_guard_agrees_with_a_set_of_everything_seen(window, arrivals):
    guard = ReplayGuard(job=JOB, window=window)
    seen: dict[str, set[int]] = {"a": set(), "b": set()}
    for sender, seq, right_job in arrivals:
        got = guard.check(job=JOB if right_job else "x", sender=sender, receiver="r", seq=seq)
        newest = max(seen[sender], default=None)
        fresh = seq not in seen[sender] and (newest is None or seq > newest - window)
        admit = right_job and seq >= 1 and fresh
        assert (got is None) == admit, (sender, seq, right_job, got)
        if admit:
            seen[sender].add(seq)


def test_concurrent_checks_admit_each_number_exactly_once():
    guard = ReplayGuard(job=JOB)
    admitted: list[int] = []
    lock = threading.Lock()

    def race() -> None:
        for seq in range(1, 501):
            if guard.check(job=JOB, sender="a", receiver="b", seq=seq) is None:
                with lock:
                    admitted.append(seq)

    threads = [threading.Thread(target=race) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(admitted) == list(range(1, 501))
