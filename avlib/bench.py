"""Benchmarks, every ratio measured in the same run: ``make bench`` (``python -m avlib bench``).

The default run (about 3-4 minutes on 2 quiet cores) prints three tables:

A. **Shared machine** (:mod:`avlib.shared_cores`). The course's pretraining step (``tiny``, batch 32, course
   shapes) alone with all cores and with 1 thread; beside one busy process; beside a second avlib job started by
   the bench. Each of these shared cases runs twice: with the thread count fixed to all cores (what every job
   did before issue 16) and with avlib's automatic threads (:func:`avlib.env.default_threads` +
   :class:`avlib.env.ThreadGovernor`). A last case starts the step beside a notebook's hand-written loop that
   only called ``env.setup()`` (governed in every module forward, :func:`avlib.env.govern_threads`). The
   automatic shared cases must not be slower than 1 thread alone.
B. **Data.** Items/s of :class:`~avlib.data.dataset.AVDataset` (decoding WAV + fbank + JPEGs) against
   :class:`~avlib.data.cache.CachedAVDataset` (memory-mapped slices), pretraining and fine-tuning
   preprocessing, on the active profile's generated dataset (the ``ci`` one when that is missing).
C. **Maths.** The ``base`` pretraining step (batch 2, fwd + bwd + Adam) in reference mode (explicit attention
   maths ``softmax(q k^T) v``, fp32, plain Adam, the reference's three passes through the shared block)
   against avlib's fused attention (SDPA) and fused Adam, same threads; bf16 autocast only where the CPU has
   bf16 units. The official implementation's 1.647 s/sample is a footnote: another machine, another day.

``--table`` prints the older per-case table (models x cases, one process per case for its peak RSS) with
the protocol the reference was measured with (``cavmae-reference.md`` section 8): seed 0, ``randn`` inputs,
batch 2, 1 warm-up + N timed iterations, Adam (lr 1e-4, wd 5e-7, betas 0.95/0.999), mask ratios 0.75,
``perf_counter`` around forward + backward (optimizer step timed apart), inference under ``no_grad``. The
official code measured 1.647 s/sample (pretraining step, fp32), 2.172 (fine-tuning) and 0.747 (AV inference)
at base size on a 2-core CPU of the course's kind.

No GPU numbers are printed unless ``--device cuda`` is given (table C and ``--table`` then run on the GPU).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

import torch

from avlib import env
from avlib.shared_cores import QUICK, SHARED_CASES, TOLERANCE, _shared_case, shared_table, step_times

__all__ = ["main", "run_case", "CASES", "VARIANTS", "REFERENCE_S_PER_SAMPLE", "step_times", "shared_table",
           "data_rates", "data_table", "maths_table"]

CASES = ("pretrain_fp32", "pretrain_bf16", "finetune_fp32", "finetune_bf16", "infer_av", "agg10_naive",
         "agg10_shared")
REFERENCE_S_PER_SAMPLE = {("base", "pretrain_fp32"): 1.647, ("base", "finetune_fp32"): 2.172,
                          ("base", "infer_av"): 0.747}
VARIANTS = {"reference": "reference maths: explicit attention, fp32, plain Adam",
            "sdpa": "+ fused attention (SDPA)", "fused": "+ SDPA + fused Adam",
            "compile": "+ SDPA + fused Adam + torch.compile"}
NUM_CLASSES = 527
FRAMES = 10


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_case(model_name: str, case: str, iters: int = 3, batch: int = 2, device: str = "cpu",
             warmup: int = 1, clock: str = "wall", variant: str = "sdpa", overrides: dict | None = None) -> dict:
    """Run one benchmark case in this process; return ``{'s_per_sample': [...], 'peak_rss_mb': ...}``.

    ``clock="cpu"`` measures process CPU time instead of wall time: with one thread it is robust to other
    processes competing for the cores (wall time is not). ``variant`` (see :data:`VARIANTS`): ``reference``
    (explicit attention maths, plain Adam), ``sdpa`` (fused attention, plain Adam), ``fused`` (SDPA + fused
    Adam), ``compile`` (``fused`` + ``torch.compile``). ``overrides``: model config fields (tests: tiny sizes).
    """
    from avlib.models import create_model

    if case not in CASES:
        raise ValueError(f"unknown case {case!r}; choose one of {CASES}.")
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose one of {tuple(VARIANTS)}.")
    dev = torch.device(device)
    now = time.perf_counter if clock == "wall" else time.process_time
    torch.manual_seed(0)
    finetune = not case.startswith("pretrain")
    model = create_model(model_name, num_classes=NUM_CLASSES if finetune else None,
                         fused_attn=variant != "reference", **(overrides or {})).to(dev)
    if variant == "compile":
        model = torch.compile(model)
    cfg = getattr(model, "_orig_mod", model).cfg
    B = batch
    audio = torch.randn(B, cfg.audio_length, cfg.num_mel_bins, device=dev)
    video = torch.randn(B, cfg.in_chans, cfg.img_size, cfg.img_size, device=dev)
    frames = torch.randn(B, FRAMES, cfg.in_chans, cfg.img_size, cfg.img_size, device=dev)
    bf16 = case.endswith("bf16")
    times, opt_times = [], []
    if case.startswith(("pretrain", "finetune")):
        model.train()
        opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4, weight_decay=5e-7,
                               betas=(0.95, 0.999), fused=variant in ("fused", "compile") or None)
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
    return {"model": model_name, "case": case, "variant": variant, "s_per_sample": times, "opt_step_s": opt_times,
            "peak_rss_mb": _peak_rss_mb(), "threads": torch.get_num_threads(), "device": str(dev)}


def _child(model_name: str, case: str, iters: int, batch: int, device: str, threads: int, clock: str,
           variant: str = "sdpa") -> dict:
    """Run one case in a fresh process (its own peak RSS)."""
    cmd = [sys.executable, "-m", "avlib.bench", "--child", model_name, case, "--iters", str(iters),
           "--batch", str(batch), "--device", device, "--threads", str(threads), "--clock", clock,
           "--variant", variant]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env.child_env(PYTHONWARNINGS="ignore"))
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


# --------------------------------------------------------------------------------------------------------------
# B. data: media decoding vs the decoded-tensor cache
# --------------------------------------------------------------------------------------------------------------
def _rate(ds, n: int) -> float:
    t = time.perf_counter()
    for i in range(n):
        ds[i]
    return n / (time.perf_counter() - t)


def data_rates(datafile: str | os.PathLike, items: int = 200, cache_dir: str | os.PathLike | None = None,
               dataset_kw: dict | None = None) -> list[dict]:
    """Items/s of AVDataset (media) and CachedAVDataset (built fresh under ``cache_dir``, build time
    reported) for pretraining and fine-tuning preprocessing, one thread, the first ``items`` clips."""
    import tempfile

    from avlib.data.cache import CachedAVDataset
    from avlib.data.dataset import AVDataset, AVDatasetConfig

    kw = dataset_kw or {}
    configs = {"pretraining": AVDatasetConfig(train=True, noise=True, **kw),
               "fine-tuning (mixup)": AVDatasetConfig(train=True, noise=True, freqm=48, timem=48, mixup=0.5,
                                                      label_smoothing=0.1, **kw)}
    rows = []
    with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
        for name, cfg in configs.items():
            media = AVDataset(datafile, cfg=cfg)
            n = min(items, len(media))
            t = time.perf_counter()
            cached = CachedAVDataset(datafile, cfg=cfg, cache_dir=tmp, progress=False)
            build = time.perf_counter() - t
            mb = sum(f.stat().st_size for f in cached.cache_path.glob("*.npy")) / 2**20
            _rate(cached, min(n, 8))  # page the maps in once, as every epoch after the first
            rows.append({"preprocessing": name, "items": n, "media_items_s": _rate(media, n),
                         "cache_items_s": _rate(cached, n), "build_s": build, "clips": len(cached),
                         "cache_mb": mb})
    return rows


def data_table(rows: list[dict]) -> str:
    head = (f"{'preprocessing':20s} {'media items/s':>14s} {'cache items/s':>14s} {'speed-up':>9s} "
            f"{'build s':>8s} {'cache MB':>9s}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['preprocessing']:20s} {r['media_items_s']:14.1f} {r['cache_items_s']:14.1f} "
                     f"{r['cache_items_s'] / r['media_items_s']:8.1f}x {r['build_s']:8.1f} {r['cache_mb']:9.0f}")
    return "\n".join(lines)


def _bench_datafile(quick: bool):
    """The active profile's generated train split if it exists, else the ``ci`` dataset (generated now)."""
    from avlib.data.orchestra import generate

    root = env.data_root() / env.profile_name()
    if not (root / "config.json").is_file() or quick:
        root = generate("ci", progress=False)
    return root / "datafiles" / "train.json"


# --------------------------------------------------------------------------------------------------------------
# C. maths: reference mode vs avlib's fast path
# --------------------------------------------------------------------------------------------------------------
def _full_step(r: dict) -> float:
    """Mean seconds per sample of the whole step: fwd + bwd + optimizer."""
    b = r.get("batch", 2)
    return statistics.mean(t + o / b for t, o in zip(r["s_per_sample"], r["opt_step_s"], strict=True))


def maths_table(rows: list[dict]) -> str:
    ref = next(r for r in rows if r["variant"] == "reference")
    head = f"{'model':6s} {'variant':52s} {'s/sample':>9s} {'vs reference':>13s}"
    lines = [head, "-" * len(head)]
    for r in rows:
        if r.get("skipped"):
            lines.append(f"{r['model']:6s} {r['label']:52s} {'-':>9s} {'-':>13s}  {r['skipped']}")
            continue
        t = _full_step(r)
        lines.append(f"{r['model']:6s} {r['label']:52s} {t:9.3f} {_full_step(ref) / t:12.2f}x")
    return "\n".join(lines)


def _bf16_note() -> tuple[bool, str]:
    cap = torch.backends.cpu.get_cpu_capability()
    ok = env.cpu_supports_bf16() or "AMX" in cap.upper()
    return ok, (f"bf16 units: {'yes' if ok else 'no'} (torch CPU capability {cap}; /proc/cpuinfo "
                f"{'has' if env.cpu_supports_bf16() else 'lacks'} avx512_bf16/amx_bf16)")


def _machine() -> str:
    name = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{name}, {len(env.cpu_slots())} CPUs in the affinity mask, torch {torch.__version__}, "
            f"load average {load:.2f} at the start" + ("  (NOT quiet: times are upper bounds)" if load > 0.5
                                                         else ""))


def _run_sections(a: argparse.Namespace) -> dict:
    out: dict = {"machine": _machine()}
    print(f"avlib bench: {out['machine']}", flush=True)
    start = time.perf_counter()
    if "A" in a.sections:
        prof = env.profile("course")
        shape = ("tiny shapes (--quick)" if a.quick else
                 f"course shapes: {prof.target_length}x{prof.num_mel_bins} audio, {prof.image_size}-px frames")
        print(f"\nA. Shared machine: pretraining step of `tiny` ({shape}, batch {a.step_batch}), median of "
              f"{a.steps} steps; 'all' = every core of the mask ({len(env.cpu_slots())}), 'auto' = avlib's "
              "choice", flush=True)
        rows = []
        for beside, setting in SHARED_CASES:
            n = str(min(len(env.cpu_slots()), env.MAX_THREADS)) if setting == "all" else setting
            rows.append({**_shared_case(n, beside, a), "threads_setting": setting})
            print(f"  {beside or 'alone'}, threads {setting}: {statistics.median(rows[-1]['step_s']):.3f} s/step",
                  flush=True)
        table, ok = shared_table(rows)
        print(table)
        print(f"-> with automatic threads the shared cases are {'never' if ok else 'SOMETIMES'} slower than 1 "
              f"thread alone (tolerance {TOLERANCE - 1:.0%}); fixed 'all' beside other work is the old behaviour.")
        out["shared"], out["shared_ok"] = rows, ok
    if "B" in a.sections:
        datafile = _bench_datafile(a.quick)
        from avlib.data.dataset import single_thread

        with single_thread():
            rows = data_rates(datafile, a.items, dataset_kw=QUICK_DATA if a.quick else None)
        print(f"\nB. Data: items/s of one process, 1 thread, first {rows[0]['items']} clips of "
              f"{env.display_path(datafile)} ({rows[0]['clips']} clips; cache built fresh for this run)")
        print(data_table(rows))
        out["data"] = rows
    if "C" in a.sections:
        threads = a.threads or min(len(env.cpu_slots()), env.MAX_THREADS)
        bf16, note = _bf16_note() if a.device == "cpu" else (True, f"device {a.device}: bf16 measured")
        model = "tiny" if a.quick else "base"
        print(f"\nC. Maths: `{model}` pretraining step (fwd + bwd + Adam), batch 2, {threads} threads, mean of "
              f"{1 if a.quick else 3} after 1 warm-up; {note}", flush=True)
        variants = ["reference", "sdpa", "fused"] + (["compile"] if a.compile else [])
        rows = []
        for v in variants + (["bf16"] if bf16 else []):
            case, var = ("pretrain_bf16", "fused") if v == "bf16" else ("pretrain_fp32", v)
            if a.quick:
                r = run_case(model, case, iters=1, batch=2, variant=var, overrides=QUICK)
            else:
                r = _child(model, case, 3, 2, a.device, threads, "wall", var)
            r["batch"], r["label"] = 2, VARIANTS[var] + (" + bf16 autocast" if v == "bf16" else "")
            rows.append(r)
        if not bf16:
            rows.append({"model": model, "label": "+ bf16 autocast", "variant": "bf16",
                         "skipped": "not measured: this CPU has no bf16 units"})
        print(maths_table(rows))
        print("-> reference mode keeps the reference's three passes through the shared block (joint, audio, "
              "video), as avlib does; the ratios come from the attention kernel and the optimizer.")
        print(f"   Footnote: the official CAV-MAE code measured {REFERENCE_S_PER_SAMPLE[('base', 'pretrain_fp32')]}"
              " s/sample for this step (base, fp32, fwd + bwd, batch 2) once on another 2-core CPU of the "
              "course's kind (cavmae-reference.md section 8): another machine and day, so no ratio is formed.")
        out["maths"] = rows
    print(f"\n(total {time.perf_counter() - start:.0f} s)")
    return out


QUICK_DATA = {"target_length": 96, "image_size": 64}  # the ci dataset's sizes


def main(argv: list[str] | None = None) -> int:
    """``make bench``: tables A-C (see the module docstring), or ``--table``; returns 0."""
    p = argparse.ArgumentParser(prog="avlib bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--sections", nargs="+", default=["A", "B", "C"], choices=["A", "B", "C"],
                   help="which tables to print (default: A B C)")
    p.add_argument("--quick", action="store_true", help="tiny sizes and few steps (tests; numbers meaningless)")
    p.add_argument("--steps", type=int, default=4, help="A: timed steps per case (default 4)")
    p.add_argument("--step-batch", type=int, default=32, help="A: batch of the course step (default 32)")
    p.add_argument("--warmup-s", type=float, default=3.0, help="A: warm-up seconds per case (default 3)")
    p.add_argument("--items", type=int, default=200, help="B: items read per dataset (default 200)")
    p.add_argument("--compile", action="store_true", help="C: also time torch.compile (slow to compile)")
    p.add_argument("--table", action="store_true", help="the per-case table (models x cases) instead of A-C")
    p.add_argument("--models", nargs="+", default=["tiny", "base"], help="--table: named configs")
    p.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES, help="--table: cases")
    p.add_argument("--iters", type=int, default=None,
                   help="--table: timed iterations (default: 3 for base, 8 otherwise)")
    p.add_argument("--batch", type=int, default=2, help="--table: batch")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads (--table default: avlib.env.default_threads; C: all cores)")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="--table: wall time (default) or process CPU time (with --threads 1 on a busy machine)")
    p.add_argument("--variant", choices=tuple(VARIANTS), default="sdpa", help=argparse.SUPPRESS)
    p.add_argument("--json", default=None, help="also write the raw results to this file")
    p.add_argument("--child", nargs=2, metavar=("MODEL", "CASE"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if not args.table and not args.child:
        out = _run_sections(args)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(out, f, indent=1, default=str)
        return 0
    threads = args.threads or env.default_threads()
    torch.set_num_threads(threads)
    if args.child:
        res = run_case(args.child[0], args.child[1], iters=args.iters or 3, batch=args.batch,
                       device=args.device, clock=args.clock, variant=args.variant)
        print(json.dumps(res))
        return 0
    bf16_ok = args.device != "cpu" or env.cpu_supports_bf16()
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
