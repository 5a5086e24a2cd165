# Copyright: contributors to the fleet_telemetry.dr collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""AWS calls: one retry and classification layer over the boto3 client, and the botocore settings of a run. Internal
to fleet_telemetry.dr; not a public API.
"""

from __future__ import annotations

import collections
import random
import threading
import time

from ansible_collections.fleet_telemetry.dr.plugins.module_utils._ratelimit import backoff_delay
from ansible_collections.fleet_telemetry.dr.plugins.module_utils._rekognition.errors import (
    FATAL,
    SERVER,
    THROTTLE,
    UNCERTAIN,
    UNKNOWN_OUTCOME,
    UNSENT,
    AwsCallError,
    classify_exception,
)


class AwsCaller(object):
    """Calls a boto3 client with retries: throttling until ``throttle_timeout`` seconds of it, other retryable
    errors ``retries`` times. Writes (``idempotent=False``) are never resent when their outcome is unknown:
    AwsCallError(UNCERTAIN) is raised instead.

    Make the boto3 client with botocore's own retries off (``client_config()``) so every attempt passes
    the rate limiter and no write is resent behind this layer's back.
    """

    def __init__(self, client, retries=5, throttle_timeout=600.0, sleep=time.sleep, clock=time.monotonic, rand=random.random):
        self.client = client
        self.retries = retries
        self.throttle_timeout = throttle_timeout
        self._sleep = sleep
        self._clock = clock
        self._rand = rand
        self._lock = threading.Lock()
        self.calls = collections.Counter()
        self.throttle_retries = 0
        self.retried = 0

    def _count(self, name, operation=None):
        with self._lock:
            if name == 'call':
                self.calls[operation] += 1
            elif name == 'throttle':
                self.throttle_retries += 1
            else:
                self.retried += 1

    def call(self, operation, idempotent=True, limiter=None, **kwargs):
        method = getattr(self.client, operation)
        attempts = 0
        throttles = 0
        throttled_since = None
        while True:
            if limiter is not None:
                limiter.acquire()
            self._count('call', operation)
            try:
                response = method(**kwargs)
            except Exception as exc:  # classified below; anything that is not an AWS error is re-raised
                classified = classify_exception(exc)
                if classified is None:
                    raise
                kind, code, message = classified
            else:
                if limiter is not None:
                    limiter.succeeded()
                return response
            if kind == THROTTLE:
                now = self._clock()
                throttled_since = now if throttled_since is None else throttled_since
                if now - throttled_since >= self.throttle_timeout:
                    raise AwsCallError(FATAL, code, 'still throttled after %d s of retries: lower tps, raise the %s quota of '
                                                    'the account, or run again later (a rerun resumes)'
                                       % (self.throttle_timeout, operation), operation)
                if limiter is not None:
                    limiter.throttled()
                self._count('throttle')
                throttles += 1
                self._sleep(backoff_delay(min(throttles, 7), rand=self._rand))
                continue
            if kind in (SERVER, UNKNOWN_OUTCOME) and not idempotent:
                raise AwsCallError(UNCERTAIN, code, message, operation)
            if kind in (UNSENT, SERVER, UNKNOWN_OUTCOME):
                attempts += 1
                if attempts > self.retries:
                    raise AwsCallError(FATAL, code, '%s (gave up after %d retries)' % (message, self.retries), operation)
                self._count('retry')
                self._sleep(backoff_delay(attempts, base=0.5, rand=self._rand))
                continue
            raise AwsCallError(kind, code, message, operation)


def client_config(concurrency, connect_timeout=10, read_timeout=60):
    """botocore Config settings for the Rekognition client of a run (a dict, merged before the user's aws_config)."""
    return {
        'retries': {'total_max_attempts': 1, 'mode': 'standard'},
        'max_pool_connections': max(10, concurrency + 2),
        'connect_timeout': connect_timeout,
        'read_timeout': read_timeout,
    }
