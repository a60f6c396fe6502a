import subprocess
import sys

from avlib.__main__ import COMMANDS, main


def test_help_and_unknown_command(capsys):
    assert main([]) == 0
    assert "Commands" in capsys.readouterr().out
    assert main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err


def test_check_command_runs_as_module():
    r = subprocess.run([sys.executable, "-m", "avlib", "check"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "[OK] torch" in r.stdout


def test_commands_point_to_modules():
    assert set(COMMANDS) >= {"data", "data-report", "run", "predict", "bench"}
