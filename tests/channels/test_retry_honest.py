"""Retry-After is a "not before" (docs/channels.md §8a): `with_retry` never calls again earlier,
whatever the backoff cap, and a wait longer than the caller may hold a worker becomes SendLater
(a durable reschedule) instead of a sleep."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from buzzi.channels.base import SendError
from buzzi.channels.outbound import SendLater, backoff_delay, with_retry


class Clock:
    """Time that moves only when the code under test sleeps; each call's time is recorded."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self.calls: list[float] = []

    async def sleep(self, delay: float) -> None:
        self.sleeps.append(delay)
        self.now += delay


def scripted(clock: Clock, outcomes: list[object]):
    async def call() -> object:
        clock.calls.append(clock.now)
        outcome = outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome
    return call


def limited(retry_after: float | None) -> SendError:
    return SendError("HTTP 429", retryable=True, retry_after=retry_after, status=429)


@settings(max_examples=60, deadline=None)
@given(waits=st.lists(st.floats(min_value=0, max_value=3600), min_size=1, max_size=4),
       cap=st.floats(min_value=0.01, max_value=60), base=st.floats(min_value=0.01, max_value=5))
async def test_never_calls_again_before_retry_after_even_past_the_cap(waits: list[float], cap: float,
                                                                        base: float) -> None:
    clock = Clock()
    call = scripted(clock, [*(limited(w) for w in waits), "ok"])
    assert await with_retry(call, max_attempts=len(waits) + 1, base=base, cap=cap, sleep=clock.sleep) == "ok"
    gaps = [later - earlier for earlier, later in zip(clock.calls, clock.calls[1:], strict=False)]
    assert len(gaps) == len(waits)
    assert all(slept >= wait for slept, wait in zip(clock.sleeps, waits, strict=True))
    assert all(gap >= wait or math.isclose(gap, wait, rel_tol=1e-9, abs_tol=1e-9)  # float sums
               for gap, wait in zip(gaps, waits, strict=True))


@settings(max_examples=100, deadline=None)
@given(attempt=st.integers(min_value=1, max_value=12), base=st.floats(min_value=0.01, max_value=5),
       cap=st.floats(min_value=0.01, max_value=60), retry_after=st.none() | st.floats(min_value=0, max_value=1e5))
def test_backoff_delay_is_never_below_retry_after_and_the_cap_bounds_only_the_backoff(
        attempt: int, base: float, cap: float, retry_after: float | None) -> None:
    delay = backoff_delay(attempt, base, cap, retry_after)
    assert delay >= 0
    if retry_after is None:
        assert delay <= min(cap, base * 2 ** (attempt - 1))
    else:
        assert delay >= retry_after and delay <= max(retry_after, cap)


async def test_a_retry_after_past_the_inline_wait_raises_send_later_without_sleeping() -> None:
    clock = Clock()
    error = limited(30)
    call = scripted(clock, [error, "never reached"])
    with pytest.raises(SendLater) as later:
        await with_retry(call, max_attempts=5, base=0.01, cap=0.05, inline_wait=10, sleep=clock.sleep)
    assert later.value.error is error and later.value.delay >= 30 and later.value.attempts == 1
    assert clock.sleeps == [] and len(clock.calls) == 1  # nothing slept, nothing sent early


async def test_a_retry_after_within_the_inline_wait_is_slept_then_sent() -> None:
    clock = Clock()
    call = scripted(clock, [limited(4), limited(None), "ok"])
    assert await with_retry(call, max_attempts=5, base=0.01, cap=0.05, inline_wait=10, sleep=clock.sleep) == "ok"
    assert clock.sleeps[0] == 4 and 0 <= clock.sleeps[1] <= 0.02
    assert clock.calls[1] - clock.calls[0] >= 4


async def test_a_backoff_longer_than_the_inline_wait_is_rescheduled_too() -> None:
    clock = Clock()
    call = scripted(clock, [limited(None), limited(None), "never reached"])
    with pytest.raises(SendLater) as later:
        # with no inline wait at all, any backoff is past it: rescheduled, not slept
        await with_retry(call, max_attempts=5, base=100, cap=100, inline_wait=0, sleep=clock.sleep)
    assert later.value.attempts == 1 and later.value.delay > 0 and clock.sleeps == []


async def test_the_last_attempt_fails_instead_of_rescheduling() -> None:
    clock = Clock()
    call = scripted(clock, [limited(0.5), limited(600)])
    with pytest.raises(SendError) as failed:
        await with_retry(call, max_attempts=2, base=0.01, cap=0.05, inline_wait=10, sleep=clock.sleep)
    assert failed.value.attempts == 2 and clock.sleeps == [0.5]


async def test_a_permanent_error_is_not_rescheduled() -> None:
    clock = Clock()
    call = scripted(clock, [SendError("bad token", retryable=False, retry_after=600)])
    with pytest.raises(SendError):
        await with_retry(call, max_attempts=5, base=0.01, cap=0.05, inline_wait=10, sleep=clock.sleep)
    assert clock.sleeps == [] and len(clock.calls) == 1
