"""The run of record (results/course-cpu.json) and the README block written from it."""

from __future__ import annotations

import json

from avlib import experiments as X

KEYS = {"profile", "wall_s", "phases_s", "test", "val", "label_efficiency_10", "retrieval_r5", "machine", "versions",
        "goals", "verdicts", "per_step_s"}


def test_run_of_record_has_the_headline_numbers():
    assert X.RECORD.is_file(), f"{X.RECORD} is missing: copy runs/course/results.json of a clean `make run` there."
    rec = json.loads(X.RECORD.read_text())
    assert KEYS <= set(rec) and rec["profile"] == "course"
    for split in ("test", "val"):
        assert {"AV", "A", "V", "AV_scratch", "AV_probe", "baseline_best", "baselines", "chance"} <= set(rec[split])
        assert rec[split]["baseline_best"] == max(rec[split]["baselines"].values())
    assert set(rec["label_efficiency_10"]) == {"pretrained", "scratch"}
    assert set(rec["retrieval_r5"]) == {"a2v", "v2a", "chance"}
    assert {"data", "baselines", "pretrain", "evaluation"} <= set(rec["phases_s"])
    assert rec["machine"]["cores"] >= 1 and rec["versions"]["torch"]
    # the verdicts and goals are those the numbers give (not edited by hand)
    assert rec["goals"] == X.goals(rec) and rec["verdicts"] == X.verdicts(rec)


def test_readme_quotes_the_run_of_record(tmp_path):
    readme = X.env.ROOT / "README.md"
    copy = tmp_path / "README.md"
    copy.write_text(readme.read_text())
    changed = X.write_readme(X.RECORD, copy)
    assert not changed, ("README.md's results block differs from results/course-cpu.json: run "
                         "`python -c \"from avlib.experiments import write_readme; write_readme()\"`.")
    text = readme.read_text()
    rec = json.loads(X.RECORD.read_text())
    assert f"| {rec['test']['AV']:.1f} |" in text


def _outputs_text(path) -> str:
    """Every text output (stream and text/plain, text/markdown) of a notebook's code cells, joined."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    parts = []
    for cell in nb["cells"]:
        for out in cell.get("outputs", []) if cell["cell_type"] == "code" else []:
            parts.append("".join(out.get("text", "")))
            for mime in ("text/plain", "text/markdown"):
                parts.append("".join(out.get("data", {}).get(mime, "")))
    return "\n".join(parts)


def test_notebooks_12_and_13_quote_the_run_of_record():
    rec = json.loads(X.RECORD.read_text())
    for name in ("12_finetuning.ipynb", "13_evaluation.ipynb"):
        text = _outputs_text(X.env.ROOT / "solutions" / name)
        for key in ("AV", "A", "V", "AV_scratch", "baseline_best"):
            value = f"{rec['test'][key]:.1f}"
            assert f"| {value} |" in text, (f"solutions/{name} does not show test {key} = {value} % of "
                                            f"results/course-cpu.json in its table: re-execute it after `make run` "
                                            f"(python .ci/notebooks.py execute --profile course {name}).")
        assert f"{rec['val']['AV']:.1f}" in text, f"solutions/{name}: val AV of the run of record missing"
