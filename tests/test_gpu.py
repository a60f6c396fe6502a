"""The CUDA path: the same entry points with ``device='cuda'`` and bf16 autocast. Skipped without a GPU."""

import pytest
import torch

from avlib import train as T
from avlib.models import create_model

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]
SMALL = dict(audio_length=96, img_size=64)


def _inputs(b: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 96, 128, generator=g), torch.randn(b, 3, 64, 64, generator=g)


def test_pretrain_forward_and_backward_match_cpu_in_fp32():
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(0)
    model = create_model("tiny", **SMALL)
    audio, video = _inputs()
    cpu = model(audio, video, generator=torch.Generator().manual_seed(1))
    cpu.loss.backward()
    g_cpu = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    gpu_model = model.cuda()
    gpu = gpu_model(audio.cuda(), video.cuda(), generator=torch.Generator().manual_seed(1))
    gpu.loss.backward()
    assert torch.equal(cpu.mask_a, gpu.mask_a.cpu()) and torch.equal(cpu.mask_v, gpu.mask_v.cpu())
    assert abs(cpu.loss.item() - gpu.loss.item()) < 1e-4
    for n, p in gpu_model.named_parameters():
        if n in g_cpu:
            torch.testing.assert_close(p.grad.cpu(), g_cpu[n], rtol=1e-3, atol=1e-4, msg=n)


def test_bf16_autocast_stays_close_to_fp32():
    torch.manual_seed(0)
    model = create_model("tiny", num_classes=13, **SMALL).cuda().eval()
    audio, video = (x.cuda() for x in _inputs(4))
    with torch.no_grad():
        ref = model(audio, video)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            low = model(audio, video)
    assert low.dtype == torch.bfloat16
    assert (low.float() - ref).norm() / ref.norm() < 3e-2


def test_multiframe_equals_separate_passes_on_cuda():
    torch.manual_seed(0)
    model = create_model("tiny", num_classes=13, **SMALL).cuda().eval()
    audio = torch.randn(2, 96, 128, device="cuda")
    frames = torch.randn(2, 4, 3, 64, 64, device="cuda")
    with torch.no_grad():
        shared = model.forward_multiframe(audio, frames)  # [B, V, K]
        naive = torch.stack([model(audio, frames[:, i]) for i in range(4)], 1)
    torch.testing.assert_close(shared, naive, rtol=1e-4, atol=1e-4)


def test_training_loops_and_predict_on_cuda(ci_data, tmp_path):
    common = dict(data=str(ci_data), device="cuda", amp=True, batch_size=8, progress=False)
    pre = T.pretrain(T.PretrainConfig(run_dir=str(tmp_path / "pre"), epochs=1, splits=("train",),
                                      validate=False, **common))
    assert pre.steps > 0 and all(torch.isfinite(torch.tensor(r["loss"])) for r in pre.history if "loss" in r)
    assert next(pre.model.parameters()).device.type == "cuda"
    ft = T.finetune(T.FinetuneConfig(run_dir=str(tmp_path / "ft"), pretrained=str(pre.model_dir), max_steps=3,
                                     val_split=None, **common))
    assert ft.steps == 3
    from avlib.predict import predict

    mp4 = sorted((ci_data / "mp4").glob("*.mp4"))[0]
    on_gpu = predict(mp4, ft.model_dir, top_k=3, device="cuda")
    on_cpu = predict(mp4, ft.model_dir, top_k=3, device="cpu")
    assert [n for n, _ in on_gpu.top] == [n for n, _ in on_cpu.top]
    torch.testing.assert_close(on_gpu.probs.cpu(), on_cpu.probs, rtol=0, atol=2e-3)
