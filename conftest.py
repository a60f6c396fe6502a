"""Repository-wide pytest configuration (applies to tests/, solutions/ and notebooks/)."""

import os

# Tests and notebook runs use the small `ci` profile unless told otherwise; nbval kernels inherit this.
os.environ.setdefault("AVLIB_PROFILE", "ci")
os.environ.setdefault("PYTHONHASHSEED", "0")
# One torch thread per test process (xdist runs one process per core); oversubscribed threads on a busy 2-core
# machine made small-model tests ~100x slower. Set before torch is imported.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("AVLIB_THREADS", "1")

# nbval compares these only in cells marked # NBVAL_CHECK_OUTPUT (we run --nbval-lax); even there, skip outputs
# that legitimately differ between runs: stderr (warnings, progress-bar fallbacks) and HTML (audio players,
# DataFrames).
_NBVAL_SKIP_COMPARE = ("stderr", "text/html", "application/javascript")


def pytest_collectstart(collector):
    if str(getattr(collector, "path", "")).endswith(".ipynb") and hasattr(collector, "skip_compare"):
        collector.skip_compare = tuple(collector.skip_compare) + _NBVAL_SKIP_COMPARE
