"""A small thread-safe token bucket: at most `rate` calls a second, `burst` at once."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable


class TokenBucket:
    """Hands out tokens at `rate` a second, holding at most `burst` of them."""

    def __init__(
        self,
        rate: float,
        burst: int = 1,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """Create a full bucket.

        Args:
            rate: tokens added per second (> 0).
            burst: the most tokens held (calls that may go at once after a pause).
            clock: a monotonic clock (tests pass a fake one).
            sleep: how to wait (tests pass a fake one).

        Raises:
            ValueError: for a rate or burst that is not positive.
        """
        if rate <= 0 or burst < 1:
            msg = "rate must be > 0 and burst >= 1"
            raise ValueError(msg)
        self.rate = float(rate)
        self.burst = int(burst)
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(burst)
        self._stamp = clock()
        self._lock = threading.Lock()

    def _reserve(self) -> float:
        """Take a token (possibly borrowed); the seconds to wait before using it."""
        with self._lock:
            now = self._clock()
            self._tokens = min(
                float(self.burst), self._tokens + (now - self._stamp) * self.rate
            )
            self._stamp = now
            self._tokens -= 1.0
            return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    def acquire(self) -> None:
        """Wait until a call may go."""
        wait = self._reserve()
        if wait > 0:
            self._sleep(wait)
