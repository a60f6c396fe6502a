"""avlib.vision: frame loading and the eval/train transforms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import InterpolationMode, v2

import avlib.vision as V


def rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


# ------------------------------------------------------------------------------------------------------------
# load_frame
# ------------------------------------------------------------------------------------------------------------
def test_load_frame_rgb_png_exact(tmp_path):
    a = rgb(20, 30)
    Image.fromarray(a).save(tmp_path / "f.png")
    x = V.load_frame(tmp_path / "f.png")
    assert x.dtype == torch.uint8 and x.shape == (3, 20, 30)
    assert torch.equal(x, torch.from_numpy(a).permute(2, 0, 1))


def test_load_frame_jpeg(tmp_path):
    a = np.full((16, 24, 3), (200, 100, 50), np.uint8)
    Image.fromarray(a).save(tmp_path / "f.jpg", quality=95)
    x = V.load_frame(tmp_path / "f.jpg")
    assert x.shape == (3, 16, 24)
    assert (x.float().mean((1, 2)) - torch.tensor([200.0, 100.0, 50.0])).abs().max() < 4


@pytest.mark.parametrize("mode,ext", [("L", "jpg"), ("L", "png"), ("RGBA", "png"), ("P", "png"),
                                      ("LA", "png"),
                                      ("RGB", "bmp"), ("L", "tiff")])
def test_load_frame_converts_modes_to_rgb(tmp_path, mode, ext):
    p = tmp_path / f"f.{ext}"
    Image.fromarray(rgb(12, 10)).convert(mode).save(p)
    x = V.load_frame(p)
    assert x.dtype == torch.uint8 and x.shape == (3, 12, 10)
    if mode in ("L", "LA"):
        assert torch.equal(x[0], x[1]) and torch.equal(x[1], x[2])


def test_load_frame_missing_empty_corrupt(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.jpg"):
        V.load_frame(tmp_path / "missing.jpg")
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(ValueError, match="empty.jpg.*empty"):
        V.load_frame(tmp_path / "empty.jpg")
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg" * 4)
    with pytest.raises(ValueError, match="bad.jpg.*corrupt"):
        V.load_frame(tmp_path / "bad.jpg")


# ------------------------------------------------------------------------------------------------------------
# transforms
# ------------------------------------------------------------------------------------------------------------
def reference_eval(img: torch.Tensor, size: int) -> torch.Tensor:
    """CAV-MAE's eval pipeline written with torchvision v2."""
    t = v2.Compose([v2.Resize(size, interpolation=InterpolationMode.BICUBIC, antialias=True),
                    v2.CenterCrop(size),
                    v2.ToDtype(torch.float32, scale=True), v2.Normalize(V.IMAGENET_MEAN, V.IMAGENET_STD)])
    return t(img)


@pytest.mark.parametrize("hw", [(48, 64), (64, 48), (32, 32), (96, 96), (20, 40)])
def test_eval_transform_equals_reference(hw):
    img = torch.from_numpy(rgb(*hw)).permute(2, 0, 1)
    out = V.eval_transform(32)(img)
    assert out.shape == (3, 32, 32) and out.dtype == torch.float32
    assert torch.allclose(out, reference_eval(img, 32), atol=1e-6)


def test_eval_transform_normalisation_and_denormalize():
    mean_rgb = torch.tensor(V.IMAGENET_MEAN)
    img = (mean_rgb * 255).round().to(torch.uint8)[:, None, None].expand(3, 8, 8).contiguous()
    out = V.eval_transform(8)(img)
    assert out.abs().max() < 0.01  # the ImageNet mean colour maps to ~0
    back = V.denormalize(out)
    assert torch.allclose(back, img.float() / 255, atol=1e-6)


def test_transform_batched_frames():
    frames = torch.from_numpy(np.stack([rgb(40, 50, s) for s in range(10)])).permute(0, 3, 1, 2)  # [V,3,H,W]
    out = V.eval_transform(32)(frames)
    assert out.shape == (10, 3, 32, 32)
    assert torch.allclose(out[3], V.eval_transform(32)(frames[3]), atol=1e-6)


def test_train_transform_without_augment_is_eval():
    img = torch.from_numpy(rgb(40, 50)).permute(2, 0, 1)
    g = torch.Generator().manual_seed(0)
    assert torch.equal(V.train_transform(32)(img, g), V.eval_transform(32)(img))


def test_train_augment_is_seeded_and_consistent_across_frames():
    img = torch.from_numpy(rgb(64, 80)).permute(2, 0, 1)
    t = V.train_transform(32, augment=True)
    outs = [t(img, torch.Generator().manual_seed(s)) for s in range(6)]
    assert all(o.shape == (3, 32, 32) for o in outs)
    assert torch.equal(outs[1], t(img, torch.Generator().manual_seed(1)))
    assert len({o.sum().item() for o in outs}) > 1  # different seeds give different crops
    assert not torch.allclose(outs[0], V.eval_transform(32)(img))
    clip = img[None].expand(4, -1, -1, -1)  # [V, 3, H, W], identical frames
    out = t(clip, torch.Generator().manual_seed(3))
    assert out.shape == (4, 3, 32, 32) and all(torch.equal(out[0], out[i]) for i in range(4))  # one crop/clip


def test_transform_rejects_bad_input():
    with pytest.raises(ValueError, match="uint8"):
        V.eval_transform(8)(torch.rand(3, 8, 8))
    with pytest.raises(ValueError, match="uint8"):
        V.eval_transform(8)(torch.zeros(4, 8, 8, dtype=torch.uint8))
