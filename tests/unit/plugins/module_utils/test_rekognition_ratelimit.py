# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The shared rate limit of re-indexing and the backoff of its retries, on a fake clock."""

from __future__ import annotations

import threading
import time

import pytest

from ansible_collections.fleet_telemetry.dr.plugins.module_utils import _ratelimit as rl


class FakeClock(object):
    """A clock that only moves when someone sleeps."""

    def __init__(self):
        self.now = 100.0
        self.slept = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.slept.append(seconds)
        self.now += seconds


@pytest.mark.parametrize('tps, expected', [(5, 4.75), (50, 47.5), (1, 0.95), (0.5, 0.475)])
def test_limiter_rate_is_just_below_the_quota(tps, expected):
    assert rl.limiter_rate(tps) == pytest.approx(expected)
    assert rl.limiter_rate(tps) < tps


@pytest.mark.parametrize('tps', [0, -1, None])
def test_limiter_rate_refuses_a_non_positive_quota(tps):
    with pytest.raises(ValueError):
        rl.limiter_rate(tps)


def test_bucket_spaces_requests_evenly_at_its_rate():
    clock = FakeClock()
    bucket = rl.TokenBucket(4.0, capacity=1, clock=clock, sleep=clock.sleep)
    start = clock.now
    for dummy in range(9):
        bucket.acquire()
    # the first token is there at once, then one every 1/4 s
    assert clock.now - start == pytest.approx(2.0)
    assert clock.slept == [pytest.approx(0.25)] * 8


def test_bucket_allows_a_burst_of_its_capacity_after_a_pause():
    clock = FakeClock()
    bucket = rl.TokenBucket(2.0, capacity=3, clock=clock, sleep=clock.sleep)
    assert [bucket.acquire() for dummy in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.acquire() == pytest.approx(0.5)
    clock.now += 10  # a long pause refills to the capacity, not beyond
    assert [bucket.acquire() for dummy in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.acquire() == pytest.approx(0.5)


def test_reservations_queue_up_in_order():
    clock = FakeClock()
    bucket = rl.TokenBucket(10.0, capacity=1, clock=clock, sleep=clock.sleep)
    delays = [bucket.reserve() for dummy in range(5)]
    assert delays == [0.0, pytest.approx(0.1), pytest.approx(0.2), pytest.approx(0.3), pytest.approx(0.4)]


def test_throttling_slows_down_and_success_recovers_to_the_configured_rate():
    clock = FakeClock()
    bucket = rl.TokenBucket(10.0, clock=clock, sleep=clock.sleep)
    assert bucket.throttled() == pytest.approx(7.0)
    clock.now += rl.THROTTLE_COOLDOWN
    assert bucket.throttled() == pytest.approx(4.9)
    for dummy in range(200):
        bucket.succeeded()
    assert bucket.rate == pytest.approx(10.0)


def test_a_burst_of_throttling_errors_slows_down_once():
    clock = FakeClock()
    bucket = rl.TokenBucket(10.0, clock=clock, sleep=clock.sleep)
    for dummy in range(8):
        bucket.throttled()
    assert bucket.rate == pytest.approx(7.0)


def test_throttling_never_stops_the_bucket():
    clock = FakeClock()
    bucket = rl.TokenBucket(10.0, clock=clock)
    for dummy in range(100):
        clock.now += 5
        bucket.throttled()
    assert bucket.rate == pytest.approx(10.0 * rl.MIN_RATE_FRACTION)


def test_throttling_drops_a_saved_up_burst():
    clock = FakeClock()
    bucket = rl.TokenBucket(1.0, capacity=5, clock=clock, sleep=clock.sleep)
    bucket.throttled()
    assert bucket.reserve() > 0


def test_threads_share_one_rate():
    rate = 400.0
    bucket = rl.TokenBucket(rate, capacity=1)
    per_thread, threads = 20, 8
    start = time.monotonic()
    workers = [threading.Thread(target=lambda: [bucket.acquire() for dummy in range(per_thread)]) for dummy in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.monotonic() - start
    # 160 tokens at 400/s: the first is free, so at least 159 / 400 s whatever the number of threads
    assert elapsed >= (per_thread * threads - 1) / rate * 0.97


@pytest.mark.parametrize('rate, capacity', [(0, 1), (-1, 1), (1, 0.5)])
def test_bucket_refuses_bad_settings(rate, capacity):
    with pytest.raises(ValueError):
        rl.TokenBucket(rate, capacity=capacity)


@pytest.mark.parametrize('attempt, low, high', [
    (0, 0.0, 0.0),
    (1, 0.125, 0.25),
    (2, 0.25, 0.5),
    (3, 0.5, 1.0),
    (8, 10.0, 20.0),   # capped
    (30, 10.0, 20.0),
])
def test_backoff_is_exponential_with_jitter_and_capped(attempt, low, high):
    assert rl.backoff_delay(attempt, base=0.25, cap=20.0, rand=lambda: 0.0) == pytest.approx(low)
    assert rl.backoff_delay(attempt, base=0.25, cap=20.0, rand=lambda: 1.0) == pytest.approx(high)
