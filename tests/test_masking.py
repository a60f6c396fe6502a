"""avlib.masking: exact keep counts, inverse permutations, whole masked lines, determinism."""

import pytest
import torch

from avlib.masking import (
    mask_tokens,
    num_kept,
    random_masking,
    structured_masking,
    structured_noise,
)


def _tokens(B, L, D=4):
    return torch.arange(B * L * D, dtype=torch.float32).reshape(B, L, D)


@pytest.mark.parametrize("L,ratio", [(128, 0.75), (196, 0.75), (200, 0.5), (36, 0.9), (10, 0.0), (512, 0.85)])
def test_exact_keep_counts(L, ratio):
    x = _tokens(3, L)
    kept, mask, ids_restore, ids_keep = random_masking(x, ratio, generator=torch.Generator().manual_seed(0))
    n = int(L * (1 - ratio))
    assert n == num_kept(L, ratio)
    assert kept.shape == (3, n, 4) and ids_keep.shape == (3, n) and ids_restore.shape == (3, L)
    assert torch.equal(mask.sum(1), torch.full((3,), float(L - n)))


def test_ids_restore_inverts_the_shuffle_and_kept_tokens_follow_ascending_noise():
    B, L, D = 2, 20, 3
    x = torch.randn(B, L, D)
    noise = torch.rand(B, L, generator=torch.Generator().manual_seed(1))
    kept, mask, ids_restore, ids_keep = random_masking(x, 0.6, noise=noise)
    # the kept tokens are those with the lowest noise, in ascending-noise order
    assert torch.equal(ids_keep, torch.argsort(noise, dim=1)[:, :kept.shape[1]])
    assert torch.equal(kept, torch.gather(x, 1, ids_keep[..., None].expand(-1, -1, D)))
    # appending placeholders and gathering with ids_restore puts every kept token back in place
    filled = torch.cat([kept, torch.full((B, L - kept.shape[1], D), float("nan"))], dim=1)
    restored = torch.gather(filled, 1, ids_restore[..., None].expand(-1, -1, D))
    visible = mask == 0
    assert torch.equal(restored[visible], x[visible])
    assert torch.isnan(restored[~visible]).all()
    # mask is 0 exactly at the kept ids
    assert torch.equal(torch.gather(mask, 1, ids_keep), torch.zeros_like(ids_keep, dtype=mask.dtype))


def test_determinism_under_a_generator():
    x = torch.randn(4, 50, 8)
    a = random_masking(x, 0.75, generator=torch.Generator().manual_seed(3))
    b = random_masking(x, 0.75, generator=torch.Generator().manual_seed(3))
    c = random_masking(x, 0.75, generator=torch.Generator().manual_seed(4))
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
    assert not torch.equal(a.mask, c.mask)
    for mode in ("time", "freq", "tf"):
        s1 = structured_masking(x, 0.75, (5, 10), mode, generator=torch.Generator().manual_seed(3))
        s2 = structured_masking(x, 0.75, (5, 10), mode, generator=torch.Generator().manual_seed(3))
        assert torch.equal(s1.mask, s2.mask)


def test_global_rng_is_used_without_generator_or_noise():
    x = torch.randn(2, 16, 4)
    torch.manual_seed(42)
    expected = torch.rand(2, 16)
    torch.manual_seed(42)
    out = random_masking(x, 0.75)
    assert torch.equal(out.ids_keep, torch.argsort(expected, dim=1)[:, :4])


@pytest.mark.parametrize("mode,grid,ratio", [("time", (8, 64), 0.75), ("freq", (8, 64), 0.75),
                                             ("tf", (8, 64), 0.75), ("time", (8, 25), 0.6),
                                             ("freq", (8, 25), 0.5), ("tf", (8, 25), 0.85),
                                             ("tf", (8, 6), 0.75)])
def test_structured_masks_cover_whole_lines(mode, grid, ratio):
    rows, cols = grid
    B, L = 3, rows * cols
    out = mask_tokens(_tokens(B, L), ratio, mode, grid, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out.mask.sum(1), torch.full((B,), float(L - int(L * (1 - ratio)))))  # exact count
    m = out.mask.reshape(B, rows, cols).bool()  # [B, freq rows, time columns]
    full_cols = m.all(dim=1).sum(1)
    full_rows = m.all(dim=2).sum(1)
    if mode == "time":
        assert (full_cols >= int(cols * ratio)).all()
    elif mode == "freq":
        assert (full_rows >= int(rows * ratio)).all()
    else:
        noise = structured_noise(B, grid, ratio, mode, generator=torch.Generator().manual_seed(0))
        lines = (noise == 1.1).reshape(B, rows, cols)
        assert lines.any()
        assert m[lines].all()  # every token of a chosen line is masked (the reference's tf mode is not)


def test_tf_at_reference_size_fits_the_budget():
    noise = structured_noise(2, (8, 64), 0.75, "tf", generator=torch.Generator().manual_seed(0))
    lines = (noise == 1.1).reshape(2, 8, 64)
    assert lines.all(dim=1).sum(1).tolist() == [32, 32]  # 33 columns in the reference, one dropped
    assert lines.all(dim=2).sum(1).tolist() == [4, 4]
    assert lines.sum().item() == 2 * 384  # exactly the masked budget


def test_bad_arguments():
    x = torch.randn(2, 16, 4)
    with pytest.raises(ValueError, match="mask ratio"):
        random_masking(x, 1.0)
    with pytest.raises(ValueError, match="noise must have shape"):
        random_masking(x, 0.5, noise=torch.rand(2, 15))
    with pytest.raises(ValueError, match="grid"):
        structured_masking(x, 0.5, (3, 5), "time")
    with pytest.raises(ValueError, match="unknown mask mode"):
        mask_tokens(x, 0.5, "blocks", (4, 4))
    with pytest.raises(ValueError, match="needs the"):
        mask_tokens(x, 0.5, "time")
