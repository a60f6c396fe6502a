"""Self-check helpers for the notebooks' exercises.

Each check prints one line: ``✅ ...`` when the learner's code agrees with the reference, a targeted hint
``❌ ...`` when it does not, and ``⏭ ...`` when the exercise was skipped (the learner's function still raises
``NotImplementedError``), in which case the notebook carries on with avlib's version. Checks return ``True``
only on success, so tests can assert on them.

Generic helpers (:func:`compare`, :func:`same`) live here; exercise-specific checks with targeted hints live in
one submodule per topic (``avlib/checks/masking.py`` ...), reachable as ``checks.masking.random_masking(fn)``
without an explicit import.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType
from typing import Any

import torch

OK, FAIL, SKIP = "✅", "❌", "⏭"


def _describe(x: Any) -> str:
    if isinstance(x, torch.Tensor):
        return f"tensor{list(x.shape)} {str(x.dtype).replace('torch.', '')}"
    return repr(x) if len(repr(x)) < 60 else type(x).__name__


def compare(name: str, got: Any, expected: Any, *, atol: float = 1e-5, hint: str = "",
            against: str = "avlib") -> bool:
    """Compare two values (tensors, numbers, tuples of them); print a verdict and return whether they match.

    ``against`` names the reference in the success message (``"✅ patchify matches avlib"``).
    """
    problem = _mismatch(got, expected, atol)
    if problem is None:
        print(f"{OK} {name} matches {against}")
        return True
    print(f"{FAIL} {name}: {problem}" + (f" Hint: {hint}" if hint else ""))
    return False


def same(name: str, mine: Callable[..., Any], reference: Callable[..., Any], *args: Any,
         atol: float = 1e-5, hint: str = "", against: str = "avlib", **kwargs: Any) -> bool:
    """Call ``mine`` and ``reference`` with the same arguments and :func:`compare` the results.

    If ``mine`` raises ``NotImplementedError`` the exercise counts as skipped (prints ``⏭``, returns False).
    """
    ran, got = run(name, mine, *args, **kwargs)
    if not ran:
        return False
    return compare(name, got, reference(*args, **kwargs), atol=atol, hint=hint, against=against)


def run(name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[bool, Any]:
    """Call a learner's ``fn``; return ``(True, result)``, or print ``⏭``/``❌`` and return ``(False, None)``.

    ``NotImplementedError`` means the exercise was skipped; any other exception becomes a ``❌`` verdict naming
    the exception, so a check never crashes the notebook.
    """
    try:
        return True, fn(*args, **kwargs)
    except NotImplementedError:
        print(f"{SKIP} {name}: not implemented yet - the notebook continues with the reference version.")
    except Exception as e:  # noqa: BLE001 - any learner error becomes a verdict
        first = (str(e).strip().splitlines() or [""])[0]
        print(f"{FAIL} {name} raised {type(e).__name__}: {first}")
    return False, None


def scalar(name: str, got: Any, how: str) -> torch.Tensor | None:
    """``got`` as a 0-d tensor if it is a one-element tensor; else print a ``❌`` verdict and return ``None``.

    ``how`` finishes the sentence "return one number (a 0-d tensor): ..." (how the loss is averaged)."""
    if not isinstance(got, torch.Tensor):
        print(f"{FAIL} {name} should return a tensor, got {type(got).__name__}.")
        return None
    if got.numel() != 1:
        print(f"{FAIL} {name} returned shape {list(got.shape)}; return one number (a 0-d tensor): {how}")
        return None
    return got.reshape(())


def first_hint(got: torch.Tensor, candidates: list[tuple[torch.Tensor, str]], default: str) -> str:
    """The hint of the first known mistake whose value ``got`` equals (to 1e-5), else ``default``.

    ``candidates`` pairs what a typical mistake computes on the check's inputs with the hint that names it."""
    for value, hint in candidates:
        if torch.allclose(got.double(), value.double(), atol=1e-5, rtol=1e-5):
            return hint
    return default


def _mismatch(got: Any, expected: Any, atol: float) -> str | None:
    """``None`` if ``got`` matches ``expected``, else a one-line description of the first difference."""
    if isinstance(expected, (tuple, list)):
        if not isinstance(got, (tuple, list)) or len(got) != len(expected):
            return f"expected a sequence of {len(expected)} items, got {_describe(got)}."
        for i, (g, e) in enumerate(zip(got, expected, strict=True)):
            if (p := _mismatch(g, e, atol)) is not None:
                return f"item {i}: {p}"
        return None
    if isinstance(expected, torch.Tensor):
        if not isinstance(got, torch.Tensor):
            return f"expected a tensor, got {_describe(got)}."
        if got.shape != expected.shape:
            return f"shape {list(got.shape)}, expected {list(expected.shape)}."
        if expected.dtype == torch.bool or not expected.is_floating_point():
            n = int((got != expected).sum())
            return None if n == 0 else f"{n} of {expected.numel()} values differ."
        diff = (got.detach().double() - expected.detach().double()).abs().max().item() if got.numel() else 0.0
        return None if diff <= atol else f"max abs difference {diff:.3g} (tolerance {atol:g})."
    if isinstance(expected, float) and isinstance(got, (int, float)):
        return None if abs(got - expected) <= atol else f"got {got:.6g}, expected {expected:.6g}."
    return None if got == expected else f"got {_describe(got)}, expected {_describe(expected)}."


def __getattr__(name: str) -> ModuleType:
    """Import topic submodules on first access: ``checks.masking`` -> ``avlib.checks.masking``."""
    if name.startswith("_"):
        raise AttributeError(name)
    try:
        return importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as e:
        if e.name == f"{__name__}.{name}":
            raise AttributeError(f"avlib.checks has no check module {name!r}") from None
        raise
