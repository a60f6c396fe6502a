"""CPU/GPU benchmark of the CAV-MAE models: ``python -m avlib bench`` (or ``python -m avlib.bench``).

Prints, per model (``tiny``, ``base`` by default), seconds per sample of: a pretraining step (fp32 and bf16
autocast), a fine-tuning step, audio-visual inference, and 10-frame test aggregation (naive = 10 separate
passes, as the reference, vs :meth:`CAVMAEFT.forward_multiframe`, which shares the audio branch), with the
peak RSS of each case. Every case runs in its own process so that its peak RSS is its own.

Protocol (the one the reference was measured with, ``cavmae-reference.md`` section 8):
``torch.manual_seed(0)``, inputs ``randn``; batch 2; 1 warm-up + N timed iterations; training = ``train()``,
Adam (lr 1e-4, wd 5e-7, betas 0.95/0.999), mask ratios 0.75/0.75, loss weights 1.0/0.01, fine-tuning with
BCE-with-logits against zeros (527 classes); ``perf_counter`` around forward + backward (the optimizer step is
timed separately); inference ``eval()`` + ``no_grad``; 10-frame aggregation with one clip per call. The
official implementation measured 1.647 s/sample (pretraining step, fp32), 2.172 (fine-tuning step) and 0.747
(AV inference) at base size on a 2-core CPU of the course's kind.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import torch

__all__ = ["main", "run_case", "CASES", "REFERENCE_S_PER_SAMPLE"]

CASES = ("pretrain_fp32", "pretrain_bf16", "finetune_fp32", "finetune_bf16", "infer_av", "agg10_naive",
         "agg10_shared")
REFERENCE_S_PER_SAMPLE = {("base", "pretrain_fp32"): 1.647, ("base", "finetune_fp32"): 2.172,
                          ("base", "infer_av"): 0.747}
NUM_CLASSES = 527
FRAMES = 10


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_case(model_name: str, case: str, iters: int = 3, batch: int = 2, device: str = "cpu",
             warmup: int = 1, clock: str = "wall") -> dict:
    """Run one benchmark case in this process; return ``{'s_per_sample': [...], 'peak_rss_mb': ...}``.

    ``clock="cpu"`` measures process CPU time instead of wall time: with one thread it is robust to other
    processes competing for the cores (wall time is not)."""
    from avlib.models import create_model

    if case not in CASES:
        raise ValueError(f"unknown case {case!r}; choose one of {CASES}.")
    dev = torch.device(device)
    now = time.perf_counter if clock == "wall" else time.process_time
    torch.manual_seed(0)
    finetune = not case.startswith("pretrain")
    model = create_model(model_name, num_classes=NUM_CLASSES if finetune else None).to(dev)
    cfg = model.cfg
    B = batch
    audio = torch.randn(B, cfg.audio_length, cfg.num_mel_bins, device=dev)
    video = torch.randn(B, cfg.in_chans, cfg.img_size, cfg.img_size, device=dev)
    frames = torch.randn(B, FRAMES, cfg.in_chans, cfg.img_size, cfg.img_size, device=dev)
    bf16 = case.endswith("bf16")
    times, opt_times = [], []
    if case.startswith(("pretrain", "finetune")):
        model.train()
        opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4, weight_decay=5e-7,
                               betas=(0.95, 0.999))
        target = torch.zeros(B, NUM_CLASSES, device=dev)
        for i in range(warmup + iters):
            _sync(dev)
            t0 = now()
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
                if finetune:
                    logits = model(audio, video).float()
                    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
                else:
                    loss = model(audio, video, mask_ratio_a=0.75, mask_ratio_v=0.75).loss
            loss.backward()
            _sync(dev)
            t1 = now()
            opt.step()
            opt.zero_grad(set_to_none=True)
            _sync(dev)
            if i >= warmup:
                times.append((t1 - t0) / B)
                opt_times.append(now() - t1)
    else:
        model.eval()
        for i in range(warmup + iters):
            _sync(dev)
            t0 = now()
            with torch.no_grad():
                if case == "infer_av":
                    model(audio, video, "multimodal")
                elif case == "agg10_naive":  # the reference: one full pass per frame
                    torch.stack([model(audio, frames[:, f]).softmax(-1) for f in range(FRAMES)]).mean(0)
                else:
                    model.forward_multiframe(audio, frames, reduce="softmax")
            _sync(dev)
            if i >= warmup:
                times.append((now() - t0) / B)
    return {"model": model_name, "case": case, "s_per_sample": times, "opt_step_s": opt_times,
            "peak_rss_mb": _peak_rss_mb(), "threads": torch.get_num_threads(), "device": str(dev)}


def _child(model_name: str, case: str, iters: int, batch: int, device: str, threads: int, clock: str) -> dict:
    """Run one case in a fresh process (its own peak RSS)."""
    cmd = [sys.executable, "-m", "avlib.bench", "--child", model_name, case, "--iters", str(iters),
           "--batch", str(batch), "--device", device, "--threads", str(threads), "--clock", clock]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark case {model_name}/{case} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _format(rows: list[dict], comparable: bool = True) -> str:
    head = (f"{'model':6s} {'case':14s} {'s/sample mean':>13s} {'min':>8s} {'peak RSS MB':>11s}  "
            f"{'vs official / notes'}")
    lines = [head, "-" * len(head)]
    by_key = {(r["model"], r["case"]): r for r in rows}
    for r in rows:
        if r.get("skipped"):
            lines.append(f"{r['model']:6s} {r['case']:14s} {'-':>13s} {'-':>8s} {'-':>11s}  {r['skipped']}")
            continue
        ts = r["s_per_sample"]
        mean, best = statistics.mean(ts), min(ts)
        note = ""
        ref = REFERENCE_S_PER_SAMPLE.get((r["model"], r["case"].replace("bf16", "fp32")))
        if ref and comparable:
            note = f"official fp32 {ref:.3f} s -> x{ref / mean:.2f} (best x{ref / best:.2f})"
        elif ref:
            note = f"official fp32 {ref:.3f} s (2 threads, wall clock: not comparable)"
        if r["case"] == "agg10_shared" and (r["model"], "agg10_naive") in by_key:
            naive = statistics.mean(by_key[(r["model"], "agg10_naive")]["s_per_sample"])
            note = f"x{naive / mean:.2f} vs naive 10 passes"
        if r["case"] == "pretrain_bf16" and (r["model"], "pretrain_fp32") in by_key:
            fp32 = statistics.mean(by_key[(r["model"], "pretrain_fp32")]["s_per_sample"])
            note += f"; x{fp32 / mean:.2f} vs fp32"
        lines.append(f"{r['model']:6s} {r['case']:14s} {mean:13.4f} {best:8.4f} {r['peak_rss_mb']:11.0f}  "
                     + note)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark table (see the module docstring); returns 0."""
    from avlib.env import cpu_supports_bf16, default_threads

    p = argparse.ArgumentParser(prog="avlib bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["tiny", "base"], help="named configs (default: tiny base)")
    p.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES)
    p.add_argument("--iters", type=int, default=None,
                   help="timed iterations (default: 3 for base, 8 otherwise)")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads (default: avlib.env.default_threads)")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="wall time (default) or process CPU time (use with --threads 1 on a busy machine)")
    p.add_argument("--json", default=None, help="also write the raw results to this file")
    p.add_argument("--child", nargs=2, metavar=("MODEL", "CASE"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    threads = args.threads or default_threads()
    torch.set_num_threads(threads)
    if args.child:
        res = run_case(args.child[0], args.child[1], iters=args.iters or 3, batch=args.batch,
                       device=args.device, clock=args.clock)
        print(json.dumps(res))
        return 0
    bf16_ok = args.device != "cpu" or cpu_supports_bf16()
    print(f"avlib bench: torch {torch.__version__}, device {args.device}, {threads} threads, {args.clock} clock, "
          f"batch {args.batch}, bf16 {'yes' if bf16_ok else 'no (this CPU lacks avx512_bf16/amx)'}",
          flush=True)
    rows = []
    start = time.perf_counter()
    for name in args.models:
        iters = args.iters or (3 if name == "base" else 8)
        for case in args.cases:
            if case.endswith("bf16") and not bf16_ok:
                rows.append({"model": name, "case": case, "skipped": "bf16 not supported here"})
                continue
            batch = 1 if case.startswith("agg10") else args.batch  # per clip of 10 frames
            rows.append(_child(name, case, iters, batch, args.device, threads, args.clock))
            print(f"  {name}/{case}: {statistics.mean(rows[-1]['s_per_sample']):.4f} s/sample", flush=True)
    print()
    print(_format(rows, comparable=args.clock == "wall" and threads == 2 and args.device == "cpu"))
    print(f"\n(total {time.perf_counter() - start:.0f} s; training cases: fwd+bwd per sample; agg10: per "
          "clip of 10 frames)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
