"""Shared test helpers (kept small: fixtures that hand out plain functions)."""
from __future__ import annotations

import time
from typing import Any, Callable

import pytest


def _wait_until(pred: Callable[[], Any], timeout: float = 5.0, cluster: Any = None,
                step: float = 0.05) -> Any:
    """Poll ``pred`` until it is truthy or ``timeout`` s pass; return its last value.

    With ``cluster``, wait by ``cluster.run_for(step)`` (the cluster keeps running);
    otherwise by a short sleep. Callers assert on the returned value."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value or time.monotonic() >= deadline:
            return value
        if cluster is not None:
            cluster.run_for(step)
        else:
            time.sleep(step)


@pytest.fixture
def wait_until() -> Callable[..., Any]:
    return _wait_until
