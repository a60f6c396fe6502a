"""Lint the course notebooks and check that notebooks/ is generated from solutions/, that their headers and the
README's notebook table come from avlib/course.py, and that their relative links resolve."""

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

from avlib import course, diagrams  # noqa: E402

# Notebooks whose header, concept figure and closing questions are still to come (their results are being
# redone); remove a number here when its notebook gets them (`python .ci/notebooks.py headers ...`).
PENDING: set[str] = set()
KNOWN_TAGS = {*nbtool.NBVAL_TAGS, course.HEADER_TAG, "concept-figure", "what-you-learned"}
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


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
    for c in nb.cells:
        assert "# NBVAL_" not in c.source or c.cell_type == "markdown", "nbval markers are cell tags, not comments"
        unknown = set(c.metadata.get("tags", [])) - KNOWN_TAGS
        assert not unknown, f"unknown cell tags {unknown}; nbval reads {nbtool.NBVAL_TAGS}"
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


def _tags(cell) -> list[str]:
    return list(cell.metadata.get("tags", []))


def test_course_table_lists_the_notebooks():
    assert [f"{nb.slug}.ipynb" for nb in course.NOTEBOOKS] == [p.name for p in SOLUTIONS]
    for nb in course.NOTEBOOKS:
        assert nb.cpu and nb.gpu, f"{nb.number}: runtimes on CPU and GPU"
        for key, _ in nb.papers:
            assert key in course.PAPERS
        for m in nb.modules:
            assert (ROOT / "avlib" / m).is_file(), f"{nb.number}: avlib/{m} does not exist"


def test_readme_table_is_generated_from_the_course_table():
    assert nbtool.readme(check=True) == 0, "README notebook table is stale: run `python .ci/notebooks.py readme`"
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    for nb in course.NOTEBOOKS:  # the runtimes a reader sees in the README are the ones in the notebook headers
        assert f"| {nb.cpu} | {nb.gpu} |" in text


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.name)
def test_header_and_closing_cells(path):
    nb = nbformat.read(path, as_version=4)
    number = path.name[:2]
    if number in PENDING:
        assert course.HEADER_TAG not in _tags(nb.cells[0]), f"{path.name} has its header: remove it from PENDING"
        return
    assert _tags(nb.cells[0]) == [course.HEADER_TAG], "the first cell is the generated header"
    assert nb.cells[0].source == course.header_markdown(number), \
        "stale header: run `python .ci/notebooks.py headers` on it"
    code = _code(nb)
    assert "concept-figure" in _tags(code[1]) and "diagrams." in code[1].source, \
        "the cell after setup shows the notebook's concept figure"
    assert code[1].source.rstrip().endswith("plt.show()")
    last = [c for c in nb.cells if c.cell_type == "markdown"][-1]
    assert _tags(last) == ["what-you-learned"] and last.source.startswith("## What you learned")
    questions = last.source.count("<details>")
    assert 3 <= questions <= 5 and questions == last.source.count("</details>"), "3-5 questions with answers"


def test_concept_figures_cover_the_course():
    assert sorted(diagrams.FIGURES) == [nb.number for nb in course.NOTEBOOKS]


@pytest.mark.parametrize("path", SOLUTIONS + EXERCISES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_relative_links_resolve(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        for target in _LINK.findall(cell.source):
            if re.match(r"^[a-z]+:", target) or target.startswith("#"):
                continue  # external (https:, mailto:) or in-page
            file = target.split("#", 1)[0]
            assert (path.parent / file).exists(), f"{path.name}: dead link {target}"


def test_text_bars_replace_frozen_widget_bars():
    bar = {"model_name": "HBoxModel", "state": {"children": ["IPY_MODEL_l", "IPY_MODEL_b", "IPY_MODEL_r"]}}
    state = {"box": bar, "l": {"model_name": "HTMLModel", "state": {"value": "train:\u2007100%"}},
             "b": {"model_name": "FloatProgressModel", "state": {"value": 4.0, "max": 4.0}},
             "r": {"model_name": "HTMLModel", "state": {"value": "\u20074/4\u2007[00:01&lt;00:00]"}}}
    view = {"model_id": "box", "version_major": 2, "version_minor": 0}
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x", execution_count=1, outputs=[
        nbformat.v4.new_output("display_data", data={nbtool.WIDGET_VIEW: view, "text/plain": "0/4"})])])
    nb.metadata["widgets"] = {nbtool.WIDGET_STATE: {"state": state}}
    assert nbtool.text_bars(nb) == 1
    out = nb.cells[0].outputs[0]
    assert out.output_type == "stream" and out.name == "stderr"
    assert out.text == "train: 100%|██████████| 4/4 [00:01<00:00]\n"
    assert "widgets" not in nb.metadata


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.name)
def test_no_frozen_progress_bars(path):
    if path.name[:2] in PENDING:
        return  # re-executed with `execute`, which stores text bars
    nb = nbformat.read(path, as_version=4)
    for c in _code(nb):
        for o in c.outputs:
            view = o.get("data", {}).get(nbtool.WIDGET_VIEW)
            assert view is None, f"{path.name}: a widget output is stored (a frozen bar?); run `execute`/`textbars`"


def test_headers_command_inserts_and_refreshes(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# 05 · Old title\n\n**What you will build:** x.\n\n"
                                      "**Expected runtime:** about 1 s\non a CPU.\n\n**Prerequisites:** 04."),
        nbformat.v4.new_code_cell("import avlib.env")])
    out = nbtool.with_header(nb, "05_masking.ipynb")
    assert out.cells[0].source == course.header_markdown("05")
    assert out.cells[1].source == "**What you will build:** x.\n\n**Prerequisites:** 04."
    again = nbtool.with_header(out, "05_masking.ipynb")
    assert len(again.cells) == 3 and again.cells[0].source == course.header_markdown("05")
