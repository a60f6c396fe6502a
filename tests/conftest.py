"""Fixtures shared by the test files."""

from pathlib import Path

import pytest

from avlib.data import orchestra


@pytest.fixture(scope="session")
def ci_data() -> Path:
    """The `ci` orchestra's folder (generated once, then reused from the data root)."""
    return orchestra.generate("ci", progress=False)


def _unfinished(*args, **kwargs):
    raise NotImplementedError


class CheckRun:
    """Runs an ``avlib.checks`` function and reads the verdict it printed (✅ pass, ❌ fail + hint, ⏭ skipped)."""

    def __init__(self, capsys: pytest.CaptureFixture) -> None:
        self.capsys = capsys

    def out(self) -> str:
        return self.capsys.readouterr().out

    def passes(self, check, *args, **kwargs) -> str:
        ok, out = check(*args, **kwargs), self.out()
        assert ok is True and out.startswith("✅"), out
        return out

    def fails(self, check, *args, hint: str = "", **kwargs) -> str:
        ok, out = check(*args, **kwargs), self.out()
        assert ok is False and out.startswith("❌") and hint in out, out
        return out

    def skips(self, check, *args, **kwargs) -> str:
        """The check given a learner's unfinished function (raises NotImplementedError) says it skipped."""
        ok, out = check(_unfinished, *args, **kwargs), self.out()
        assert not ok and out.strip().splitlines()[-1].startswith("⏭"), out
        return out


@pytest.fixture
def todo():
    """A learner's function not written yet (the notebooks' ``raise NotImplementedError`` stub)."""
    return _unfinished


@pytest.fixture
def run_check(capsys) -> CheckRun:
    return CheckRun(capsys)


@pytest.fixture
def last_line(capsys):
    """The last line a check printed (its verdict) since the previous call."""
    return lambda: capsys.readouterr().out.strip().splitlines()[-1]
