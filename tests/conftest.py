"""Shared test helpers (kept small: fixtures that hand out plain functions)."""
from __future__ import annotations

import os
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


@pytest.fixture(autouse=True)
def _environment_restored():
    """A test leaves ``os.environ`` as it found it. (dask.multiprocessing sets PYTHONHASHSEED in
    the process that uses it, for good: every kernel and node process started later inherited
    it, and chapter 03's demonstration that ``hash()`` differs between processes failed.)"""
    saved = dict(os.environ)
    yield
    if os.environ != saved:
        os.environ.clear()
        os.environ.update(saved)
