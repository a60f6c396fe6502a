#!/usr/bin/env python
"""Maintain the course notebooks.

    python .ci/notebooks.py generate            # solutions/*.ipynb -> notebooks/*.ipynb (exercise twins)
    python .ci/notebooks.py check               # fail if notebooks/ is not what `generate` would write
    python .ci/notebooks.py execute [FILES...]  # re-run solutions in place (course profile) to refresh outputs
    python .ci/notebooks.py headers [FILES...]  # write each solution's header cell from avlib/course.py
    python .ci/notebooks.py readme [--check]    # write the README's notebook table from avlib/course.py
    python .ci/notebooks.py textbars FILES...   # replace stored tqdm widget bars by their final text

``execute`` runs with ``AVLIB_WIDGETS=0`` (explorers draw their static view) and stores progress bars as text in
their final state (``textbars``), so committed outputs never hold a frozen widget. ``--keep-outputs-from REV``
keeps the outputs stored at git revision REV for every cell whose source is unchanged (except cells containing a
``--refresh`` text, e.g. a cell whose output went stale because the library changed); ``--only-new`` runs just
the first code cell (setup) and the cells that have never run (no outputs, no execution count; with ``--tag``
only those with that tag), which must then not depend on other cells.

Solutions are authored in ``solutions/``. In a code cell, the lines between ``### BEGIN SOLUTION`` and
``### END SOLUTION`` become ``# YOUR CODE HERE`` + ``raise NotImplementedError`` (at the indentation of the BEGIN
marker). Such exercise cells, and cells whose first line is ``# SELF-CHECK``, get the ``nbval-skip`` cell tag in
the twin (replacing ``nbval-check-output``). Twins carry no outputs, no execution counts and no metadata but the
cell tags.

nbval markers are cell tags (``nbval-check-output``, ``nbval-ignore-output``, ``nbval-skip``,
``raises-exception``), never ``# NBVAL_*`` comments in the code learners read.
"""

from __future__ import annotations

import argparse
import copy
import html
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # avlib.course, without importing torch
SOLUTIONS, EXERCISES = ROOT / "solutions", ROOT / "notebooks"
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
SELF_CHECK = "# SELF-CHECK"
_BEGIN_RE = re.compile(r"^(\s*)### BEGIN SOLUTION\s*$")
CHECK, IGNORE, SKIP, RAISES = "nbval-check-output", "nbval-ignore-output", "nbval-skip", "raises-exception"
NBVAL_TAGS = (CHECK, IGNORE, SKIP, RAISES)


def strip_solutions(source: str, where: str) -> tuple[str, bool]:
    """Replace every solution region of a cell's source; return (new source, whether a region was found)."""
    out, inside, found = [], False, False
    for n, line in enumerate(source.splitlines(), 1):
        if m := _BEGIN_RE.match(line):
            if inside:
                raise SystemExit(f"{where} line {n}: nested '{BEGIN}'")
            inside, found = True, True
            out += [f"{m.group(1)}# YOUR CODE HERE", f"{m.group(1)}raise NotImplementedError"]
        elif line.strip() == END:
            if not inside:
                raise SystemExit(f"{where} line {n}: '{END}' without '{BEGIN}'")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise SystemExit(f"{where}: '{BEGIN}' is never closed by '{END}'")
    return "\n".join(out), found


def exercise_twin(nb: nbformat.NotebookNode, name: str) -> nbformat.NotebookNode:
    """The learner's version of a solution notebook."""
    twin = copy.deepcopy(nb)
    for i, cell in enumerate(twin.cells):
        cell.pop("id", None)
        if cell.cell_type != "code":
            tags = list(cell.metadata.get("tags", []))
            cell.metadata = {"tags": tags} if tags else {}
            continue
        src, is_exercise = strip_solutions(cell.source, f"{name} cell {i}")
        if "# NBVAL_" in src:
            raise SystemExit(f"{name} cell {i}: use cell tags ({', '.join(NBVAL_TAGS)}), not '# NBVAL_*' comments")
        tags = list(cell.metadata.get("tags", []))
        lines = src.splitlines()
        if is_exercise or (lines and lines[0].strip() == SELF_CHECK):
            tags = [t for t in tags if t not in (CHECK, IGNORE, SKIP)] + [SKIP]
        cell.source = src
        cell.outputs, cell.execution_count, cell.metadata = [], None, ({"tags": tags} if tags else {})
    twin.metadata = {"kernelspec": nb.metadata.get("kernelspec", {}),
                     "language_info": {"name": "python"}}
    twin.nbformat_minor = 5
    for i, cell in enumerate(twin.cells):  # deterministic ids so that regeneration is byte-stable
        cell.id = f"{Path(name).stem[:2]}-{i:03d}"
    return twin


def _dump(nb: nbformat.NotebookNode) -> str:
    return nbformat.writes(nb) + "\n"


def solution_files() -> list[Path]:
    return sorted(SOLUTIONS.glob("[0-9][0-9]_*.ipynb"))


def generate(check: bool = False) -> int:
    """Write (or, with ``check``, compare) every exercise twin; return the number of stale twins."""
    stale = 0
    wanted = {p.name for p in solution_files()}
    for sol in solution_files():
        text = _dump(exercise_twin(nbformat.read(sol, as_version=4), sol.name))
        target = EXERCISES / sol.name
        if target.exists() and target.read_text(encoding="utf-8") == text:
            continue
        stale += 1
        if check:
            print(f"stale: {target.relative_to(ROOT)} differs from what {sol.relative_to(ROOT)} generates")
        else:
            target.write_text(text, encoding="utf-8")
            print(f"wrote {target.relative_to(ROOT)}")
    for extra in sorted(EXERCISES.glob("*.ipynb")):
        if extra.name not in wanted:
            stale += 1
            print(f"{'orphan' if check else 'note'}: {extra.relative_to(ROOT)} has no solution notebook")
    return stale


WIDGET_VIEW, WIDGET_STATE = "application/vnd.jupyter.widget-view+json", "application/vnd.jupyter.widget-state+json"


def _bar_text(models: dict, model_id: str) -> str | None:
    """The final text of a tqdm.notebook bar (an HBox of HTML, FloatProgress, HTML) from stored widget state."""
    box = models.get(model_id, {})
    if box.get("model_name") != "HBoxModel":
        return None
    kids = [models.get(c.removeprefix("IPY_MODEL_"), {}) for c in box.get("state", {}).get("children", [])]
    names = [k.get("model_name") for k in kids]
    if names != ["HTMLModel", "FloatProgressModel", "HTMLModel"]:
        return None
    left, bar, right = (k.get("state", {}) for k in kids)
    frac = bar.get("value", 0) / bar["max"] if bar.get("max") else 0.0
    filled = min(10, int(10 * frac))
    text = f"{left.get('value', '')}|{'█' * filled}{' ' * (10 - filled)}|{right.get('value', '')}"
    return html.unescape(text).replace("\u2007", " ").replace("&nbsp;", " ")


def text_bars(nb: nbformat.NotebookNode) -> int:
    """Replace every stored tqdm widget bar by a stderr stream with its final text (as tqdm prints it outside
    Jupyter); drop the widget state. Returns the number of bars converted; other widgets are left alone."""
    state = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    n = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        outputs = []
        for out in cell.outputs:
            view = out.get("data", {}).get(WIDGET_VIEW)
            text = _bar_text(state, view["model_id"]) if view else None
            if text is None:
                outputs.append(out)
                continue
            n += 1
            outputs.append(nbformat.v4.new_output("stream", name="stderr", text=text + "\n"))
        cell.outputs = outputs
    if n and not any(WIDGET_VIEW in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.outputs):
        nb.metadata.pop("widgets", None)
    return n


def _plain(source: str) -> str:
    return "\n".join(ln.rstrip() for ln in source.strip().splitlines())


def _outputs_at(rev: str, path: Path) -> dict[str, tuple]:
    """{source: (outputs, execution_count)} of the code cells of ``path`` at git revision ``rev``."""
    rel = path.resolve().relative_to(ROOT)
    text = subprocess.run(["git", "show", f"{rev}:{rel.as_posix()}"], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout
    old = nbformat.reads(text, as_version=4)
    return {_plain(c.source): (c.outputs, c.execution_count) for c in old.cells if c.cell_type == "code"}


def execute(files: list[str], profile: str, timeout: int, keep_from: str | None = None,
            only_new: bool = False, tag: str | None = None, refresh: tuple[str, ...] = ()) -> None:
    """Execute solution notebooks in place with the given profile (outputs are what gets committed)."""
    from nbclient import NotebookClient

    os.environ["AVLIB_PROFILE"] = profile
    os.environ["AVLIB_WIDGETS"] = "0"  # static views of the explorers: they render in stored notebooks
    paths = [Path(f) for f in files] or solution_files()
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        t0 = time.perf_counter()
        run = nb
        if only_new:
            code = [c for c in nb.cells if c.cell_type == "code"]
            new = [c for c in code[1:] if not c.outputs and c.execution_count is None
                   and (tag is None or tag in c.metadata.get("tags", []))]
            run = copy.deepcopy(nb)
            run.cells = [copy.deepcopy(c) for c in [code[0], *new]]
        NotebookClient(run, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(path.parent)}}).execute()
        if only_new:
            for cell, done in zip(new, run.cells[1:], strict=True):
                cell.outputs, cell.metadata = done.outputs, done.metadata
        elif keep_from:
            old = _outputs_at(keep_from, path)
            for cell in nb.cells:
                stale = any(r in cell.source for r in refresh)
                if cell.cell_type == "code" and _plain(cell.source) in old and not stale:
                    cell.outputs = old[_plain(cell.source)][0]
        if only_new or keep_from:  # one increasing sequence; cells that never ran keep None
            ran = [c for c in nb.cells if c.cell_type == "code" and (c.outputs or c.execution_count is not None)]
            for i, cell in enumerate(ran, 1):
                cell.execution_count = i
        bars = text_bars(nb)
        nbformat.write(nb, path)
        print(f"executed {path} [{profile}] in {time.perf_counter() - t0:.1f} s; {bars} progress bars as text",
              flush=True)


# --------------------------------------------------------------------------------------------------------------
# headers and the README table, from avlib/course.py
# --------------------------------------------------------------------------------------------------------------
def _course():
    from avlib import course

    return course


_RUNTIME_RE = re.compile(r"\n*\*\*Expected runtime:\*\*.*?(?=\n\n|\Z)", re.S)


def with_header(nb: nbformat.NotebookNode, name: str) -> nbformat.NotebookNode:
    """``nb`` with its first cell the generated header (tag ``course-header``). An authored first cell that
    starts with the notebook's ``# NN · title`` loses that line and its "Expected runtime" paragraph, which the
    header now states."""
    course = _course()
    text = course.header_markdown(Path(name).stem)
    cells = list(nb.cells)
    if cells and course.HEADER_TAG in cells[0].metadata.get("tags", []):
        cells[0].source = text
    else:
        if cells and cells[0].cell_type == "markdown" and cells[0].source.startswith(f"# {Path(name).stem[:2]} "):
            body = cells[0].source.split("\n", 1)[1] if "\n" in cells[0].source else ""
            cells[0].source = _RUNTIME_RE.sub("", body).strip()
        cells.insert(0, nbformat.v4.new_markdown_cell(text, metadata={"tags": [course.HEADER_TAG]}))
    nb.cells = cells
    return nb


def headers(files: list[str], check: bool = False) -> int:
    """Write (or compare) the header cell of the given solution notebooks; return how many are stale."""
    stale = 0
    for f in files:
        path = Path(f)
        nb = nbformat.read(path, as_version=4)
        before = _dump(nb)
        after = _dump(with_header(nb, path.name))
        if before != after:
            stale += 1
            if check:
                print(f"stale header: {path}")
            else:
                nbformat.write(nb, path)
                print(f"wrote header of {path}")
    return stale


def readme(check: bool = False, path: Path = ROOT / "README.md") -> int:
    """Write (or compare) the notebook table of the README between the course markers; 1 if stale."""
    course = _course()
    text = path.read_text(encoding="utf-8")
    if course.README_BEGIN not in text or course.README_END not in text:
        raise SystemExit(f"{path}: markers {course.README_BEGIN!r} ... {course.README_END!r} not found")
    head, rest = text.split(course.README_BEGIN, 1)
    _, tail = rest.split(course.README_END, 1)
    new = f"{head}{course.README_BEGIN}\n{course.readme_table()}\n{course.README_END}{tail}"
    if new == text:
        return 0
    if check:
        print(f"stale: the notebook table of {path.name} differs from avlib/course.py")
    else:
        path.write_text(new, encoding="utf-8")
        print(f"wrote the notebook table of {path.name}")
    return 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("generate", help="write notebooks/ from solutions/")
    sub.add_parser("check", help="fail if notebooks/ is stale")
    ex = sub.add_parser("execute", help="re-run solutions in place")
    ex.add_argument("files", nargs="*")
    ex.add_argument("--profile", default="course")
    ex.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    ex.add_argument("--keep-outputs-from", metavar="REV", help="keep REV's outputs of unchanged cells")
    ex.add_argument("--only-new", action="store_true", help="run only the setup cell and never-run cells")
    ex.add_argument("--tag", help="with --only-new: only never-run cells with this tag")
    ex.add_argument("--refresh", action="append", default=[], metavar="TEXT",
                    help="with --keep-outputs-from: cells containing TEXT take the new outputs anyway")
    hd = sub.add_parser("headers", help="write header cells from avlib/course.py")
    hd.add_argument("files", nargs="+")
    hd.add_argument("--check", action="store_true")
    rd = sub.add_parser("readme", help="write the README notebook table from avlib/course.py")
    rd.add_argument("--check", action="store_true")
    tb = sub.add_parser("textbars", help="stored tqdm widget bars -> final text")
    tb.add_argument("files", nargs="+")
    args = ap.parse_args(argv)
    if args.cmd == "execute":
        execute(args.files, args.profile, args.timeout, args.keep_outputs_from, args.only_new, args.tag,
                tuple(args.refresh))
        return 0
    if args.cmd == "headers":
        return int(headers(args.files, check=args.check) > 0 and args.check)
    if args.cmd == "readme":
        return readme(check=args.check) if args.check else (readme() and 0)
    if args.cmd == "textbars":
        for f in args.files:
            nb = nbformat.read(f, as_version=4)
            n = text_bars(nb)
            nbformat.write(nb, f)
            print(f"{f}: {n} progress bars as text")
        return 0
    stale = generate(check=args.cmd == "check")
    if args.cmd == "check" and stale:
        print("run `make exercises` to regenerate notebooks/ from solutions/")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
