"""tastemaker.threads: thread counts from the free cores, overrides, nesting, the pinned server."""

from __future__ import annotations

import numpy  # noqa: F401 (loads the BLAS whose threads are checked)
import pytest
from threadpoolctl import threadpool_info

import tastemaker.threads as threads


@pytest.fixture(autouse=True)
def fresh_policy(monkeypatch):
    monkeypatch.setattr(threads, "_pinned", None)
    monkeypatch.setattr(threads, "_requested", None)
    monkeypatch.delenv(threads.ENV, raising=False)


def test_free_cores_decide_and_a_busy_machine_gets_fewer(monkeypatch):
    monkeypatch.setattr(threads, "allowed_cores", lambda: 4)
    monkeypatch.setattr(threads, "busy_cores", lambda: 0)
    assert threads.pick() == 4
    monkeypatch.setattr(threads, "busy_cores", lambda: 3)
    assert threads.pick() == 1
    monkeypatch.setattr(threads, "busy_cores", lambda: 9)  # more runnable than cores
    assert threads.pick() == 1
    monkeypatch.setattr(threads, "busy_cores", lambda: 0)
    assert threads.pick(work=1e6) == 1  # a small dense problem: one thread


def test_overrides_take_precedence(monkeypatch):
    monkeypatch.setattr(threads, "allowed_cores", lambda: 4)
    monkeypatch.setattr(threads, "busy_cores", lambda: 0)
    monkeypatch.setenv(threads.ENV, "3")
    assert threads.pick() == 3
    threads.request(2)
    assert threads.pick() == 2 and threads.pick(5) == 5
    threads.request(None)
    assert threads.pick() == 3


def test_busy_cores_reads_this_machine():
    assert 0 <= threads.busy_cores(samples=2, interval=0.0) < 10_000
    assert 1 <= threads.pick() <= threads.allowed_cores()


def blas_threads() -> set[int]:
    return {lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"}


def test_limited_sets_blas_and_an_outer_limit_wins(monkeypatch):
    monkeypatch.setattr(threads, "allowed_cores", lambda: 2)
    monkeypatch.setattr(threads, "busy_cores", lambda: 0)
    with threads.limited(1) as outer:
        assert outer == 1 and blas_threads() == {1}
        with threads.limited() as inner:  # e.g. a model's fit inside a tuning trial
            assert inner == 1
    with threads.limited() as count:
        assert count == 2


def test_single_blas_thread_is_free_once_pinned(monkeypatch):
    assert not isinstance(threads.single_blas_thread(), type(threads.contextlib.nullcontext()))
    threads.pin(1)
    assert blas_threads() == {1}
    assert isinstance(threads.single_blas_thread(), type(threads.contextlib.nullcontext()))
    assert threads.pick() == 1
