"""avlib.bench logic at tiny sizes (no timing assertions: numbers belong to `make bench`)."""

from __future__ import annotations

import pytest

from avlib import bench


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


def test_shared_machine_names_are_still_importable_from_bench():
    from avlib import shared_cores

    for name in shared_cores.__all__:
        assert getattr(bench, name) is getattr(shared_cores, name)
