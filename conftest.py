"""Repository-wide pytest configuration (applies to tests/, solutions/ and notebooks/)."""

import os

# Tests and notebook runs use the small `ci` profile unless told otherwise; nbval kernels inherit this.
os.environ.setdefault("AVLIB_PROFILE", "ci")
os.environ.setdefault("PYTHONHASHSEED", "0")

# nbval compares these only in cells marked # NBVAL_CHECK_OUTPUT (we run --nbval-lax); even there, skip outputs
# that legitimately differ between runs: stderr (warnings, progress-bar fallbacks) and HTML (audio players,
# DataFrames).
_NBVAL_SKIP_COMPARE = ("stderr", "text/html", "application/javascript")


def pytest_collectstart(collector):
    if str(getattr(collector, "path", "")).endswith(".ipynb") and hasattr(collector, "skip_compare"):
        collector.skip_compare = tuple(collector.skip_compare) + _NBVAL_SKIP_COMPARE
