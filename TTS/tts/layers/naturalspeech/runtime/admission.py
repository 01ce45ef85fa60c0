"""Admission control of the server: a few requests synthesize at once, a bounded number wait, each with a deadline.

The toolkit's `tts-server` puts every request behind one global lock with no limit: one long text makes every other
client wait for as long as it takes. Here `max_concurrent` requests synthesize at the same time (the model is only
read, so threads can share it), at most `max_queue` more wait for a slot, and a request that would make the queue
longer is refused at once (:class:`QueueFull`, HTTP 503 with Retry-After). Every request has a deadline
(`request_timeout` after it arrived): it gives up waiting for a slot then (:class:`DeadlineExceeded`), and the
synthesis checks it between chunks, so a long text holds its slot for `request_timeout` seconds at most.
"""

import threading
import time
from collections.abc import Callable


class QueueFull(Exception):
    """Every synthesis slot is busy and the waiting queue is full."""


class DeadlineExceeded(Exception):
    """The request's time limit passed (waiting for a slot or synthesizing)."""


class Admission:
    """Bounded concurrency with a bounded waiting queue.

    Args:
        max_concurrent: Requests synthesizing at once.
        max_queue: Requests allowed to wait for a slot; more are refused.
    """

    def __init__(self, max_concurrent: int, max_queue: int):
        if max_concurrent < 1 or max_queue < 0:
            raise ValueError(f"need max_concurrent >= 1 and max_queue >= 0, got {max_concurrent} and {max_queue}")
        self.max_concurrent, self.max_queue = max_concurrent, max_queue
        self._slots = threading.Semaphore(max_concurrent)
        self._lock = threading.Lock()
        self._waiting = 0

    def acquire(self, deadline: float) -> Callable[[], None]:
        """Wait for a slot until `deadline` (`time.monotonic()` time); returns the function that frees it.

        The returned function may be called any number of times; only the first call frees the slot.

        Raises:
            QueueFull: `max_queue` requests are already waiting.
            DeadlineExceeded: No slot became free before the deadline.
        """
        if not self._slots.acquire(blocking=False):
            with self._lock:
                if self._waiting >= self.max_queue:
                    raise QueueFull(f"{self.max_concurrent} requests are synthesizing and {self._waiting} are waiting")
                self._waiting += 1
            try:
                acquired = self._slots.acquire(timeout=max(0.0, deadline - time.monotonic()))
            finally:
                with self._lock:
                    self._waiting -= 1
            if not acquired:
                raise DeadlineExceeded("no synthesis slot became free within the request's time limit")
        released = threading.Event()

        def release() -> None:
            with self._lock:
                if released.is_set():
                    return
                released.set()
            self._slots.release()

        return release
