"""Fixtures shared by the test files."""

from pathlib import Path

import pytest

from avlib.data import orchestra


@pytest.fixture(scope="session")
def ci_data() -> Path:
    """The `ci` orchestra's folder (generated once, then reused from the data root)."""
    return orchestra.generate("ci", progress=False)
