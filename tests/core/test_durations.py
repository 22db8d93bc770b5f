"""One validation of durations (issue 12, item 3): ttl and timeout options and wait
timeouts, out of range, on memory://. The conformance suite runs the same rules on
every backend (``test_bad_ttls_are_rejected``, ``test_a_timeout_beyond_max_seconds_...``)."""

from __future__ import annotations

import math
import threading
from typing import Any

import pytest

import fencing_coord as fc
from fencing_coord.config import OptionReader, parse_url
from fencing_coord.testing import FakeClock
from fencing_coord.validation import INT32_MILLISECONDS, MAX_SECONDS, check_positive_seconds, check_timeout

HUGE: list[Any] = [10**400, -(10**400), 1e300, MAX_SECONDS + 1, 10**5000]


@pytest.mark.parametrize("option", ["ttl", "timeout"])
@pytest.mark.parametrize("value", HUGE, ids=["10**400", "-10**400", "1e300", "MAX_SECONDS+1", "10**5000"])
def test_out_of_range_keyword_options_are_configuration_errors(option: str, value: Any) -> None:
    with pytest.raises(fc.ConfigurationError) as info:
        fc.connect("memory://durations", **{option: value})
    message = str(info.value)
    assert option in message
    assert len(message) < 300  # no 400-digit echo


@pytest.mark.parametrize("option", ["ttl", "timeout"])
@pytest.mark.parametrize("text", ["1e400", "1" * 400, "inf", "nan", "31536001"])
def test_out_of_range_query_options_are_configuration_errors(option: str, text: str) -> None:
    with pytest.raises(fc.ConfigurationError, match=option):
        fc.connect(f"memory://durations?{option}={text}")


def test_the_longest_duration_is_accepted() -> None:
    with fc.connect("memory://durations", ttl=MAX_SECONDS, timeout=10**7) as backend:
        assert backend.ttl == MAX_SECONDS


def test_a_backend_bounds_the_ttl_for_its_service() -> None:
    """ZooKeeper's session timeout is a signed 32-bit count of milliseconds: its backend
    reads the common options with max_ttl=INT32_MILLISECONDS."""
    too_long = OptionReader(parse_url(f"memory://x?ttl={2**31 / 1000}"), {})
    with pytest.raises(fc.ConfigurationError, match=r"ttl must be at most 2147483\.647 seconds"):
        too_long.common(max_ttl=INT32_MILLISECONDS)
    fits = OptionReader(parse_url("memory://x"), {"ttl": 2147483})
    assert fits.common(max_ttl=INT32_MILLISECONDS).ttl == 2147483.0
    assert math.floor(INT32_MILLISECONDS * 1000) == 2**31 - 1


def test_wait_timeouts_above_max_seconds_mean_forever() -> None:
    assert check_timeout(1e300) is None
    assert check_timeout(10**400) is None
    assert check_timeout(MAX_SECONDS) == MAX_SECONDS
    for bad in (math.inf, math.nan, -(10**400), -1):
        with pytest.raises(fc.InvalidArgument):
            check_timeout(bad)
    with pytest.raises(fc.InvalidArgument, match="digits"):
        check_positive_seconds(10**5000, "ttl")


@pytest.mark.parametrize("timeout", [1e300, 10**400], ids=["1e300", "10**400"])
def test_acquire_and_campaign_with_a_huge_timeout_wait(timeout: float) -> None:
    with fc.connect("memory://durations-wait") as holder, fc.connect("memory://durations-wait") as waiter:
        grant = holder.acquire("job", timeout=0)
        queued = threading.Event()
        got: list[fc.Grant] = []
        thread = threading.Thread(target=lambda: got.append(waiter.acquire("job", timeout, on_queued=queued.set)))
        thread.start()
        assert queued.wait(10)
        holder.release(grant)
        thread.join(10)
        assert got
        assert got[0].token > grant.token
        term = waiter.election("leader").campaign(timeout=timeout)
        assert not term.lost


@pytest.mark.parametrize("timeout", [1e300, 10**400], ids=["1e300", "10**400"])
def test_wait_lost_with_a_huge_timeout_waits_like_none(timeout: float) -> None:
    """Grant.wait_lost reads its timeout like acquire does: beyond MAX_SECONDS it waits
    forever (no raw OverflowError from threading)."""
    clock = FakeClock()
    with fc.connect("memory://durations-lost", ttl=5, clock=clock) as backend:
        grant = backend.acquire("job", timeout=0)
        answer: list[bool] = []
        waiting = threading.Thread(target=lambda: answer.append(grant.wait_lost(timeout)))
        waiting.start()
        clock.advance(5)
        backend.describe("job")  # settles the expired lease: the grant is lost
        waiting.join(10)
        assert answer == [True]


@pytest.mark.parametrize("timeout", [-1, math.nan, math.inf, "1", True])
def test_wait_lost_refuses_a_bad_timeout(timeout: Any) -> None:
    with fc.connect("memory://durations-lost") as backend:
        grant = backend.acquire("job", timeout=0)
        with pytest.raises((fc.InvalidArgument, fc.InvalidArgumentType), match="timeout"):
            grant.wait_lost(timeout)
