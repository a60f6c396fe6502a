#!/usr/bin/env python
"""Maintain the course notebooks.

    python .ci/notebooks.py generate            # solutions/*.ipynb -> notebooks/*.ipynb (exercise twins)
    python .ci/notebooks.py check               # fail if notebooks/ is not what `generate` would write
    python .ci/notebooks.py execute [FILES...]  # re-run solutions in place (course profile) to refresh outputs

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
import os
import re
import sys
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
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


def execute(files: list[str], profile: str, timeout: int) -> None:
    """Execute solution notebooks in place with the given profile (outputs are what gets committed)."""
    from nbclient import NotebookClient

    os.environ["AVLIB_PROFILE"] = profile
    paths = [Path(f) for f in files] or solution_files()
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        t0 = time.perf_counter()
        NotebookClient(nb, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(path.parent)}}).execute()
        nbformat.write(nb, path)
        print(f"executed {path} [{profile}] in {time.perf_counter() - t0:.1f} s", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("generate", help="write notebooks/ from solutions/")
    sub.add_parser("check", help="fail if notebooks/ is stale")
    ex = sub.add_parser("execute", help="re-run solutions in place")
    ex.add_argument("files", nargs="*")
    ex.add_argument("--profile", default="course")
    ex.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    args = ap.parse_args(argv)
    if args.cmd == "execute":
        execute(args.files, args.profile, args.timeout)
        return 0
    stale = generate(check=args.cmd == "check")
    if args.cmd == "check" and stale:
        print("run `make exercises` to regenerate notebooks/ from solutions/")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
