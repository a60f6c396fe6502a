"""avlib.shared_cores (table A of `make bench`) at tiny sizes (no timing assertions: numbers belong to
`make bench`)."""

from __future__ import annotations

import argparse

import pytest
import torch

from avlib import shared_cores as S


def _row(beside, setting, step_s, threads=1, end=None):
    return {"beside": beside, "threads_setting": setting, "step_s": step_s, "threads": threads,
            "threads_end": end if end is not None else threads}


def test_shared_table_compares_with_one_thread_alone():
    rows = [_row(None, "all", [0.6, 0.7, 0.8], 2), _row(None, "1", [1.2, 1.0, 1.1]),
            _row("busy", "all", [1.9], 2), _row("busy", "auto", [1.15]),
            _row("job", "all", [6.4], 2), _row("job", "auto", [1.0], 2, 1), _row("notebook", "auto", [1.1])]
    table, ok = S.shared_table(rows)
    assert ok  # 1.15 / 1.1 = 1.05 <= tolerance
    lines = table.splitlines()
    assert "0.64x" in lines[2] and "1.00x" in lines[3] and "5.82x" in lines[6]
    assert lines[5].rstrip().endswith("ok") and "2->1" in lines[7] and "SLOWER" not in table
    assert lines[8].startswith("beside a notebook's loop") and lines[8].rstrip().endswith("ok")
    rows[3]["step_s"] = [1.9]  # auto beside a busy process as slow as the fixed 2 threads
    table, ok = S.shared_table(rows)
    assert not ok and "SLOWER" in table.splitlines()[5]


@pytest.mark.parametrize("threads", ["1", "auto", "setup"])
def test_step_times_runs_the_course_step(threads):
    from avlib import env

    before = torch.get_num_threads()
    try:
        r = S.step_times(threads, steps=2, warmup_s=0.0, batch=2, quick=True)
    finally:
        env.govern_threads(False)  # "setup" governs through env.setup, as a notebook
        torch.set_num_threads(before)
    assert len(r["step_s"]) == 2 and all(t > 0 for t in r["step_s"])
    assert r["threads"] >= 1 and r["history"][0] == r["threads"]


@pytest.mark.slow
def test_shared_case_starts_and_stops_a_competing_job():
    a = argparse.Namespace(steps=1, step_batch=2, warmup_s=0.0, quick=True)
    row = S._shared_case("1", "job", a)
    assert row["beside"] == "job" and len(row["step_s"]) == 1 and row["threads"] == 1
    row = S._shared_case("1", "notebook", a)  # the competitor is a hand-written loop after env.setup()
    assert row["beside"] == "notebook" and len(row["step_s"]) == 1


def test_child_environment_fixes_threads_and_passes_the_chosen_profile(monkeypatch):
    from avlib import env

    monkeypatch.setenv("AVLIB_PROFILE", "paper")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setattr(env, "_active_profile", "ci")  # as after setup(profile_name_="ci"); restored after
    fixed, auto, setup = S._env("2"), S._env("auto"), S._env("setup")
    assert fixed["AVLIB_THREADS"] == fixed["OMP_NUM_THREADS"] == "2" and fixed["AVLIB_PROFILE"] == "ci"
    assert "AVLIB_THREADS" not in auto and "OMP_NUM_THREADS" not in auto and auto["AVLIB_PROFILE"] == "ci"
    assert "AVLIB_THREADS" not in setup and "OMP_NUM_THREADS" not in setup
    assert S._step_cmd("2", argparse.Namespace(steps=1, step_batch=2, warmup_s=0.0, quick=True))[1:4] == [
        "-m", "avlib.shared_cores", "2"]
