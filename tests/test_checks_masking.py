"""The notebook-05 self-checks: right implementations pass, typical mistakes get their targeted hint."""

import torch

from avlib import checks, masking


def mae_masking(x, ratio, generator=None, *, inverted=False, keep_masked_count=False, by_position=False,
                shuffled_mask=False, restore_is_shuffle=False, highest=False, global_rng=False):
    """MAE's random_masking, with switches for the usual mistakes."""
    B, L, D = x.shape
    len_keep = int(L * ratio) if keep_masked_count else int(L * (1 - ratio))
    noise = torch.rand(B, L) if global_rng else torch.rand(B, L, generator=generator)
    ids_shuffle = torch.argsort(noise, dim=1, descending=highest)  # [B, L]
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    ids_keep = ids_shuffle[:, :len_keep]
    if by_position:
        ids_keep = ids_keep.sort(dim=1).values
        rest = ids_shuffle[:, len_keep:]
        ids_restore = torch.argsort(torch.cat([ids_keep, rest], dim=1), dim=1)
    x_kept = torch.gather(x, 1, ids_keep.unsqueeze(-1).expand(-1, -1, D))
    mask = torch.ones(B, L)
    mask[:, :len_keep] = 0
    if not shuffled_mask:
        mask = torch.gather(mask, 1, ids_restore)
    if inverted:
        mask = 1 - mask
    return x_kept, mask, ids_shuffle if restore_is_shuffle else ids_restore


def good_time_masking(x, ratio, grid, generator=None):
    B, L, _ = x.shape
    rows, cols = grid
    noise = torch.rand(B, L, generator=generator).reshape(B, rows, cols)
    chosen = torch.argsort(torch.rand(B, cols, generator=generator), dim=1)[:, :int(cols * ratio)]  # [B, n]
    noise.scatter_(2, chosen[:, None, :].expand(-1, rows, -1), 1.1)
    return masking.random_masking(x, ratio, noise=noise.reshape(B, L))


def freq_instead(x, ratio, grid, generator=None):
    return masking.freq_masking(x, ratio, grid, generator=generator)


def test_random_masking_accepts_mae_and_avlib(last_line):
    assert checks.masking.random_masking(mae_masking)
    assert last_line().startswith("✅ random_masking matches avlib")
    assert checks.masking.random_masking(masking.random_masking)


def test_random_masking_hints(last_line, run_check):
    cases = {
        "inverted": "inverted",
        "keep_masked_count": "int(L·ratio)",
        "by_position": "ascending-noise order",
        "shuffled_mask": "torch.gather(mask, 1, ids_restore)",
        "restore_is_shuffle": "inverse permutation",
        "highest": "highest-noise",
        "global_rng": "generator",
    }
    for flag, phrase in cases.items():
        assert not checks.masking.random_masking(lambda x, r, generator=None, f=flag: mae_masking(
            x, r, generator, **{f: True})), flag
        line = last_line()
        assert line.startswith("❌") and phrase in line, (flag, line)
    run_check.skips(checks.masking.random_masking)
    assert not checks.masking.random_masking(lambda x, r, generator=None: x)
    assert "must return (x_kept, mask, ids_restore)" in last_line()


def test_time_masking_verdicts(last_line, run_check):
    assert checks.masking.time_masking(good_time_masking)
    assert "identical to avlib" in last_line()
    assert checks.masking.time_masking(masking.time_masking)

    def other_draw(x, ratio, grid, generator=None):  # columns first: valid, but another draw than avlib
        B, L, _ = x.shape
        rows, cols = grid
        chosen = torch.argsort(torch.rand(B, cols, generator=generator), dim=1)[:, :int(cols * ratio)]
        noise = torch.rand(B, L, generator=generator).reshape(B, rows, cols)
        noise.scatter_(2, chosen[:, None, :].expand(-1, rows, -1), 1.1)
        return masking.random_masking(x, ratio, noise=noise.reshape(B, L))

    assert checks.masking.time_masking(other_draw)
    assert "another random draw" in last_line()
    assert not checks.masking.time_masking(freq_instead)
    assert "frequency rows" in last_line()
    assert not checks.masking.time_masking(lambda x, r, grid, generator=None: mae_masking(x, r, generator))
    assert "time columns fully masked" in last_line()

    def same_columns(x, ratio, grid, generator=None):
        B, L, _ = x.shape
        rows, cols = grid
        noise = torch.rand(B, L, generator=generator).reshape(B, rows, cols)
        noise[:, :, :int(cols * ratio)] = 1.1
        return masking.random_masking(x, ratio, noise=noise.reshape(B, L))

    assert not checks.masking.time_masking(same_columns)
    assert "same time columns" in last_line()
    run_check.skips(checks.masking.time_masking)
