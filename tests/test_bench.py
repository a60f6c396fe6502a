"""avlib.bench logic at tiny sizes (no timing assertions: numbers belong to `make bench`)."""

from __future__ import annotations

import argparse

import pytest
import torch

from avlib import bench


def _row(beside, setting, step_s, threads=1, end=None):
    return {"beside": beside, "threads_setting": setting, "step_s": step_s, "threads": threads,
            "threads_end": end if end is not None else threads}


def test_shared_table_compares_with_one_thread_alone():
    rows = [_row(None, "all", [0.6, 0.7, 0.8], 2), _row(None, "1", [1.2, 1.0, 1.1]),
            _row("busy", "all", [1.9], 2), _row("busy", "auto", [1.15]),
            _row("job", "all", [6.4], 2), _row("job", "auto", [1.0], 2, 1)]
    table, ok = bench.shared_table(rows)
    assert ok  # 1.15 / 1.1 = 1.05 <= tolerance
    lines = table.splitlines()
    assert "0.64x" in lines[2] and "1.00x" in lines[3] and "5.82x" in lines[6]
    assert lines[5].rstrip().endswith("ok") and "2->1" in lines[7] and "SLOWER" not in table
    rows[3]["step_s"] = [1.9]  # auto beside a busy process as slow as the fixed 2 threads
    table, ok = bench.shared_table(rows)
    assert not ok and "SLOWER" in table.splitlines()[5]


@pytest.mark.parametrize("threads", ["1", "auto"])
def test_step_times_runs_the_course_step(threads):
    before = torch.get_num_threads()
    try:
        r = bench.step_times(threads, steps=2, warmup_s=0.0, batch=2, quick=True)
    finally:
        torch.set_num_threads(before)
    assert len(r["step_s"]) == 2 and all(t > 0 for t in r["step_s"])
    assert r["threads"] >= 1 and r["history"][0] == r["threads"]


def test_maths_table_ratios_and_bf16_note():
    rows = []
    for v in ("reference", "fused"):
        r = bench.run_case("tiny", "pretrain_fp32", iters=1, batch=2, variant=v, overrides=bench.QUICK)
        r["batch"], r["label"] = 2, bench.VARIANTS[v]
        rows.append(r)
    rows.append({"model": "tiny", "label": "+ bf16 autocast", "variant": "bf16", "skipped": "no bf16 units"})
    table = bench.maths_table(rows).splitlines()
    assert "1.00x" in table[2] and table[3].endswith("x") and "no bf16 units" in table[4]
    ok, note = bench._bf16_note()
    assert isinstance(ok, bool) and "torch CPU capability" in note
    with pytest.raises(ValueError, match="unknown variant"):
        bench.run_case("tiny", "pretrain_fp32", variant="fast")


def test_data_rates_media_against_cache(tmp_path):
    from test_cache import make_dataset

    datafile = make_dataset(tmp_path / "ds", n=4)
    rows = bench.data_rates(datafile, items=3, cache_dir=tmp_path,
                            dataset_kw={"target_length": 112, "image_size": 32})
    assert [r["preprocessing"] for r in rows] == ["pretraining", "fine-tuning (mixup)"]
    assert all(r["items"] == 3 and r["clips"] == 4 and r["media_items_s"] > 0 and r["cache_items_s"] > 0
               and r["cache_mb"] > 0 for r in rows)
    assert "speed-up" in bench.data_table(rows)
    assert list(tmp_path.glob("tmp*")) == []  # the bench's cache is temporary


@pytest.mark.slow
def test_shared_case_starts_and_stops_a_competing_job():
    a = argparse.Namespace(steps=1, step_batch=2, warmup_s=0.0, quick=True)
    row = bench._shared_case("1", "job", a)
    assert row["beside"] == "job" and len(row["step_s"]) == 1 and row["threads"] == 1
