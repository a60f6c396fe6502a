"""Every third-party module imported by avlib, the tests and the notebooks is declared in the requirements."""

import ast
import json
import re
import sys
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
REQ_FILES = ("requirements.txt", "requirements-nodeps.txt")
LOCAL = {"avlib", "conftest", "tests"}


def _declared() -> set[str]:
    names = set()
    for f in REQ_FILES:
        for line in (ROOT / f).read_text().splitlines():
            line = line.split("#")[0].strip()
            if line and not line.startswith("-"):
                names.add(_norm(re.split(r"[<>=!~;\[ ]", line)[0]))
    return names


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _imports(source: str) -> set[str]:
    mods = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            mods |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            mods.add(node.module.split(".")[0])
    return mods


def _sources() -> dict[str, str]:
    out = {}
    for pattern in ("avlib/**/*.py", "tests/**/*.py", "conftest.py", ".ci/*.py"):
        for p in sorted(ROOT.glob(pattern)):
            out[str(p.relative_to(ROOT))] = p.read_text(encoding="utf-8")
    for p in sorted([*ROOT.glob("solutions/*.ipynb"), *ROOT.glob("notebooks/*.ipynb")]):
        cells = json.loads(p.read_text(encoding="utf-8"))["cells"]
        code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        # IPython magics and shell escapes are not Python
        out[str(p.relative_to(ROOT))] = "\n".join(
            ln for ln in code.splitlines() if not ln.lstrip().startswith(("%", "!")))
    return out


def test_every_import_is_declared():
    declared, dists = _declared(), metadata.packages_distributions()
    missing = {}
    for where, src in _sources().items():
        for mod in _imports(src) - LOCAL - set(sys.stdlib_module_names):
            if (ROOT / "tests" / f"{mod}.py").exists():
                continue  # a helper module of the test suite
            candidates = {_norm(d) for d in dists.get(mod, [])}
            if not candidates:
                missing.setdefault(f"{mod} (not installed)", []).append(where)
            elif not candidates & declared:
                missing.setdefault(f"{mod} (from {', '.join(sorted(candidates))})", []).append(where)
    assert not missing, "undeclared imports - add them to requirements.txt:\n" + "\n".join(
        f"  {m}: {', '.join(w[:3])}" for m, w in sorted(missing.items()))


def test_environment_yml_uses_requirements():
    env = (ROOT / "environment.yml").read_text()
    assert "python=3.11" in env
    for f in REQ_FILES:
        assert f"-r {f}" in env, f"environment.yml must install {f} through pip"


@pytest.mark.parametrize("pkg", ["torch==2.14.1", "torchvision==0.29.1", "torchaudio==2.11.0"])
def test_torch_trio_pinned_together(pkg):
    lines = [ln.split("#")[0].strip() for ln in (ROOT / "requirements.txt").read_text().splitlines()]
    assert pkg in lines
