"""Token buckets per account and per client address, and the in-flight cap (load shedding).

No well-kept library fits both needs here (a token bucket whose refusal says when to retry, in
process, without a store): ``limits`` offers fixed and sliding windows, slowapi wraps it for
decorators. So a bucket is twenty lines; memory is bounded by evicting the least recently used.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    stamp: float


class TokenBuckets:
    def __init__(self, rate_per_s: float, burst: int, max_keys: int = 100_000) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def take(self, key: str, now: float | None = None) -> float:
        """0.0 if a token was taken; else the seconds until one is available (Retry-After)."""
        now = time.monotonic() if now is None else now
        b = self._buckets.get(key)
        if b is None:
            b = self._buckets[key] = _Bucket(float(self.burst), now)
            if len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            b.tokens = min(float(self.burst), b.tokens + (now - b.stamp) * self.rate_per_s)
            b.stamp = now
        if b.tokens >= 1.0:
            b.tokens -= 1.0
            return 0.0
        return (1.0 - b.tokens) / self.rate_per_s if self.rate_per_s > 0 else math.inf


def retry_after_header(seconds: float) -> str:
    return str(max(1, math.ceil(min(seconds, 3600))))


class InFlight:
    """Placements waiting for a decision in this process; above the cap new ones are shed."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.count = 0

    def try_enter(self) -> bool:
        if self.count >= self.cap:
            return False
        self.count += 1
        return True

    def leave(self) -> None:
        self.count -= 1
