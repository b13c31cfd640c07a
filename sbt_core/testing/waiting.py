"""Waiting for something that happens asynchronously (a webhook, a delivery in another process)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], what: str, timeout: float = 30.0, interval: float = 0.05) -> T:
    """Poll ``predicate()`` every ``interval`` seconds until it returns something truthy, and return it.

    ``timeout`` (seconds) is a hang guard, never a timing assertion: set it generously.
    :raises AssertionError: naming ``what`` when it never came.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what} after {timeout:g}s")
        time.sleep(interval)
