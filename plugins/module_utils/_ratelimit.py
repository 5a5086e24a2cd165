# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""A shared client-side rate limit and the backoff of retries. Internal to fleet_telemetry.dr; not a public API.

AWS quotas such as Rekognition's IndexFaces TPS hold for the whole account and region, so every worker
thread of a run takes its requests from one :class:`TokenBucket`. The bucket is set a little below the
quota (:func:`limiter_rate`) so a steady run is not throttled, and it slows down by itself when the
service throttles anyway (another client sharing the quota), then creeps back to the configured rate.

Nothing here talks to AWS; the clock and sleep are injectable so unit tests run without waiting.
"""

from __future__ import annotations

import random
import threading
import time

# The run's rate is this fraction of the configured TPS: close enough to use the quota, far enough
# below it that clock jitter between us and the service does not cause throttling.
RATE_MARGIN = 0.95
# On a throttling error the rate is multiplied by this, never going below MIN_RATE_FRACTION of it,
# at most once per THROTTLE_COOLDOWN seconds: the threads in flight are throttled together, and one
# burst of errors is one signal, not one per thread.
THROTTLE_FACTOR = 0.7
THROTTLE_COOLDOWN = 1.0
MIN_RATE_FRACTION = 0.05
# Each successful request gives back this fraction of the configured rate (additive increase).
RECOVERY_FRACTION = 0.02


def limiter_rate(tps, margin=RATE_MARGIN):
    """The requests per second a run allows itself for a quota of ``tps`` (just below it)."""
    if tps is None or tps <= 0:
        raise ValueError('tps must be a positive number, not %r' % (tps,))
    return float(tps) * margin


class TokenBucket(object):
    """A thread-safe token bucket that hands out time slots in order ("reservations").

    ``acquire()`` takes one token; when none is left it reserves the next free slot and sleeps until
    then, outside the lock, so N waiting threads leave at ``1 / rate`` intervals in arrival order.
    ``capacity`` is the burst allowed after a pause (1 means perfectly even spacing).
    ``throttled()`` and ``succeeded()`` adapt the rate (multiplicative decrease, additive increase).
    """

    def __init__(self, rate, capacity=1.0, clock=time.monotonic, sleep=time.sleep, cooldown=THROTTLE_COOLDOWN):
        if rate <= 0:
            raise ValueError('rate must be positive')
        if capacity < 1:
            raise ValueError('capacity must be at least 1')
        self.max_rate = float(rate)
        self.rate = float(rate)
        self.min_rate = self.max_rate * MIN_RATE_FRACTION
        self.capacity = float(capacity)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens = float(capacity)
        self._last = clock()
        self._cooldown = cooldown
        self._last_decrease = None
        self.waited = 0.0

    def _refill(self, now):
        self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
        self._last = now

    def reserve(self):
        """Take a token; return how many seconds the caller must wait before using it (0 when one was free)."""
        with self._lock:
            self._refill(self._clock())
            self._tokens -= 1.0
            delay = -self._tokens / self.rate if self._tokens < 0 else 0.0
            self.waited += delay
            return delay

    def acquire(self):
        """Block until the caller may send one request; return the seconds waited."""
        delay = self.reserve()
        if delay > 0:
            self._sleep(delay)
        return delay

    def throttled(self):
        """The service throttled a request: slow down (once per cooldown) and forget any saved-up burst."""
        with self._lock:
            now = self._clock()
            self._refill(now)
            if self._last_decrease is None or now - self._last_decrease >= self._cooldown:
                self.rate = max(self.min_rate, self.rate * THROTTLE_FACTOR)
                self._last_decrease = now
            self._tokens = min(self._tokens, 0.0)
            return self.rate

    def succeeded(self):
        """A request went through: recover towards the configured rate."""
        with self._lock:
            if self.rate < self.max_rate:
                self._refill(self._clock())
                self.rate = min(self.max_rate, self.rate + self.max_rate * RECOVERY_FRACTION)
            return self.rate


def backoff_delay(attempt, base=0.25, cap=20.0, rand=random.random):
    """Seconds to wait before retry number ``attempt`` (1, 2, ...): exponential with full jitter.

    The upper bound doubles from ``base`` up to ``cap``; the delay is uniform in [bound / 2, bound]
    so that retries of many threads spread out but never retry immediately.
    """
    if attempt < 1:
        return 0.0
    bound = min(cap, base * (2 ** (attempt - 1)))
    return bound / 2.0 + rand() * bound / 2.0
