import torch

from avlib import checks


def test_compare_verdicts(capsys):
    assert checks.compare("x", torch.ones(2), torch.ones(2))
    assert not checks.compare("x", torch.ones(3), torch.ones(2))
    assert not checks.compare("x", torch.ones(2) + 1e-3, torch.ones(2), hint="look at the scale")
    assert not checks.compare("n", 13, 12)
    assert checks.compare("pair", (torch.zeros(1), 2), (torch.zeros(1), 2))
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "✅ x matches avlib"
    assert out[1] == "❌ x: shape [3], expected [2]."
    assert "max abs difference 0.001" in out[2] and "Hint: look at the scale" in out[2]
    assert out[3] == "❌ n: got 13, expected 12."


def test_same_handles_skipped_exercise(capsys):
    def mine(x):
        raise NotImplementedError

    assert not checks.same("patchify", mine, lambda x: x, torch.ones(1))
    assert "⏭ patchify: not implemented yet" in capsys.readouterr().out
    assert checks.same("double", lambda x: 2 * x, lambda x: x + x, torch.arange(3))


def test_integer_tensors_compared_exactly(capsys):
    assert not checks.compare("ids", torch.tensor([1, 2]), torch.tensor([1, 3]))
    assert "1 of 2 values differ" in capsys.readouterr().out


def test_unknown_topic_is_an_attribute_error():
    import pytest

    with pytest.raises(AttributeError, match="no check module 'nosuchtopic'"):
        checks.nosuchtopic  # noqa: B018
