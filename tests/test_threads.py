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


def test_torch_fits_follow_the_policy(monkeypatch):
    # torch only here: a heavy optional dependency.
    import torch

    from tastemaker.models.torch_common import SMALL_DATA_CELLS, threads_for

    before = torch.get_num_threads()
    monkeypatch.setattr(threads, "allowed_cores", lambda: 2)
    monkeypatch.setattr(threads, "busy_cores", lambda: 1)  # a neighbour on one of two cores
    with threads_for(10 * SMALL_DATA_CELLS):
        assert torch.get_num_threads() == 1
    threads.request(2)
    with threads_for(10 * SMALL_DATA_CELLS):
        assert torch.get_num_threads() == 2
    with threads_for(1):  # small data: one thread whatever was asked
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("command", ["recommend", "similar", "ablate"])
def test_query_commands_take_threads(command, monkeypatch, capsys):
    from conftest import run_cli

    code, out, _ = run_cli(capsys, command, "--help")
    assert code == 0 and "--threads" in out and "TASTEMAKER_THREADS" in out


def test_recommend_scores_within_the_requested_threads(tmp_path, monkeypatch, capsys):
    from conftest import run_cli
    from tastemaker.data.synth import synthetic_interactions
    from tastemaker.models import create_model
    from tastemaker.models.als import ALS

    data = synthetic_interactions(users=60, artists=120, listens=3_000, seed=0)
    model_dir = create_model("als", factors=4, iterations=2, seed=0).fit(data).save(tmp_path / "m")
    seen = []
    original = ALS.recommend

    def recording(self, *args, **kwargs):
        seen.append((threads.pick(), blas_threads()))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ALS, "recommend", recording)
    user = data.users.id(0)
    code, _, err = run_cli(capsys, "recommend", str(model_dir), "--user", user, "--threads", "1")
    assert code == 0, err
    assert seen == [(1, {1})]
