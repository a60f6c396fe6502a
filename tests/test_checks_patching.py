"""The notebook-04 self-checks: right implementations pass, typical mistakes get their targeted hint."""

import torch

from avlib import checks, patching


def good_patchify(x, p):
    B, C, H, W = x.shape
    x = x.reshape(B, C, H // p, p, W // p, p).permute(0, 2, 4, 3, 5, 1)  # [B, h, w, p, p, C]
    return x.reshape(B, (H // p) * (W // p), p * p * C)


def channel_first_patchify(x, p):
    B, C, H, W = x.shape
    x = x.reshape(B, C, H // p, p, W // p, p).permute(0, 2, 4, 1, 3, 5)  # [B, h, w, C, p, p]
    return x.reshape(B, (H // p) * (W // p), p * p * C)


def column_major_patchify(x, p):
    B, C, H, W = x.shape
    x = x.reshape(B, C, H // p, p, W // p, p).permute(0, 4, 2, 3, 5, 1)  # [B, w, h, p, p, C]
    return x.reshape(B, (H // p) * (W // p), p * p * C)


def naive_patchify(x, p):
    B, C, H, W = x.shape
    return x.reshape(B, (H // p) * (W // p), p * p * C)  # wrong: mixes patches


def test_patchify_verdicts(last_line, run_check):
    assert checks.patching.patchify(good_patchify)
    assert last_line().startswith("✅ patchify matches avlib")
    assert checks.patching.patchify(patching.patchify)
    assert not checks.patching.patchify(channel_first_patchify)
    assert "(row i, column j, channel c)" in last_line()
    assert not checks.patching.patchify(column_major_patchify)
    assert "row-major" in last_line()
    assert not checks.patching.patchify(naive_patchify)
    assert "mix pixels of different patches" in last_line()
    assert not checks.patching.patchify(lambda x, p: good_patchify(x, p).transpose(1, 2))
    assert "transpose the last two dims" in last_line()
    run_check.skips(checks.patching.patchify)


def test_unpatchify_verdicts(last_line):
    assert checks.patching.unpatchify(patching.unpatchify)
    assert last_line().startswith("✅ unpatchify")
    assert not checks.patching.unpatchify(lambda x, grid, p, C: x.reshape(x.shape[0], C, grid[0] * p, -1))
    assert "plain reshape" in last_line()
    assert not checks.patching.unpatchify(lambda x, grid, p, C: 1 / 0)
    assert "raised ZeroDivisionError" in last_line()


def test_conv_as_linear_verdicts(last_line, run_check):
    def good(conv):
        D = conv.weight.shape[0]
        return conv.weight.permute(0, 2, 3, 1).reshape(D, -1), conv.bias

    def channel_first(conv):
        return conv.weight.reshape(conv.weight.shape[0], -1), conv.bias

    assert checks.patching.conv_as_linear(good)
    assert last_line().startswith("✅ conv_as_linear")
    assert not checks.patching.conv_as_linear(channel_first)
    assert "permute it to [D, p, p, C]" in last_line()
    assert not checks.patching.conv_as_linear(lambda conv: (good(conv)[0].T, conv.bias))
    assert "[out, in]" in last_line()
    assert not checks.patching.conv_as_linear(lambda conv: (good(conv)[0], None))
    assert "bias" in last_line()
    run_check.skips(checks.patching.conv_as_linear)


def test_checks_do_not_mutate_avlib_results():
    x = torch.arange(2 * 3 * 8 * 12.0).reshape(2, 3, 8, 12)
    assert torch.equal(patching.unpatchify(patching.patchify(x, 4), (2, 3), 4, 3), x)
