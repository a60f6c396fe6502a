"""Lint the course notebooks and check that notebooks/ is generated from solutions/."""

import base64
import importlib.util
import json
import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = sorted((ROOT / "solutions").glob("[0-9][0-9]_*.ipynb"))
EXERCISES = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))

_spec = importlib.util.spec_from_file_location("nbtool", ROOT / ".ci" / "notebooks.py")
nbtool = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(nbtool)


def _code(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


def test_there_are_notebooks():
    assert SOLUTIONS, "no solution notebooks found"
    assert [p.name for p in SOLUTIONS] == [p.name for p in EXERCISES]


def test_exercises_are_generated_from_solutions():
    assert nbtool.generate(check=True) == 0, "notebooks/ is stale: run `make exercises`"


def test_solution_regions_become_stubs():
    src = "def f(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION\n\nprint(f)"
    out, found = nbtool.strip_solutions(src, "t")
    assert found
    assert out == "def f(x):\n    # YOUR CODE HERE\n    raise NotImplementedError\n\nprint(f)"
    check = {"tags": ["nbval-check-output"]}
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell(src, execution_count=1, metadata=dict(check),
                                  outputs=[nbformat.v4.new_output("stream", text="hi")]),
        nbformat.v4.new_code_cell("# SELF-CHECK\ncheck(f)", metadata=dict(check)),
        nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["nbval-ignore-output"],
                                                     "execution": {"iopub.status.busy": "t"}}),
        nbformat.v4.new_markdown_cell("# Title", metadata={"tags": ["course-header"], "foo": "x"}),
    ])
    twin = nbtool.exercise_twin(nb, "05_masking.ipynb")
    assert [c.metadata.get("tags") for c in twin.cells] == [
        ["nbval-skip"], ["nbval-skip"], ["nbval-ignore-output"], ["course-header"]]
    assert twin.cells[0].source.startswith("def f(x):") and "YOUR CODE HERE" in twin.cells[0].source
    assert all(c.outputs == [] and c.execution_count is None for c in twin.cells if c.cell_type == "code")
    with pytest.raises(SystemExit, match="never closed"):
        nbtool.strip_solutions("### BEGIN SOLUTION\nx = 1", "t")
    with pytest.raises(SystemExit, match="cell tags"):
        nbtool.exercise_twin(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("# NBVAL_SKIP\nx = 1")]),
                             "05_masking.ipynb")


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.name)
def test_solution_notebook_lint(path):
    nb = nbformat.read(path, as_version=4)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"
    code = _code(nb)
    assert "avlib.env.setup(" in code[0].source or "env.setup(" in code[0].source, \
        "the first code cell must call avlib.env.setup()"
    intro = nb.cells[0].source.lower()
    assert "cpu" in intro and "gpu" in intro, "the first cell states the expected runtime on CPU and GPU"
    assert any("### BEGIN SOLUTION" in c.source for c in code), "at least one exercise per notebook"
    assert any(c.source.startswith("# SELF-CHECK") for c in code), "each exercise is followed by a self-check"
    size = path.stat().st_size
    assert size < 3_000_000, f"{path.name} is {size / 1e6:.1f} MB; keep committed outputs small"
    text = path.read_text(encoding="utf-8")
    assert not re.search(r"(/tmp/ipykernel|/work/|/root/|/home/[a-z])", text), "machine paths in outputs"
    for c in code:
        if c.outputs:
            assert c.execution_count is not None, "a cell with outputs must keep its execution count (nbval)"
        for line in c.source.splitlines():
            assert not re.search(r"\bplt\.\w+\(.*\);\s*$", line), f"end plotting cells with plt.show(): {line}"
        for o in c.outputs:
            for mime, data in o.get("data", {}).items():
                if mime.startswith("image/") and mime != "image/svg+xml":
                    assert len(base64.b64decode(data)) < 500_000, f"an image in {path.name} is over 500 kB"
                assert mime not in ("image/svg+xml", "application/pdf"), "figures must be PNG (nbval compares SVG)"


@pytest.mark.parametrize("path", EXERCISES, ids=lambda p: p.name)
def test_exercise_notebooks_have_no_outputs(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    for c in nb["cells"]:
        if c["cell_type"] == "code":
            assert c["outputs"] == [] and c["execution_count"] is None
