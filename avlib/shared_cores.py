"""Shared cores: the course's pretraining step timed alone, beside a busy process, beside a second avlib job and
beside a notebook's hand-written training loop,
with the thread count fixed to all cores or chosen by avlib (:func:`avlib.env.default_threads` +
:class:`avlib.env.ThreadGovernor`). Table A of ``make bench`` (:mod:`avlib.bench`, which re-exports these names).

Each case times the step in a fresh process, ``python -m avlib.shared_cores THREADS [--steps N] [--batch B]
[--warmup-s S] [--quick] [--forever]`` (it prints one JSON row; ``--forever`` is the competing job).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import torch

from avlib import env

__all__ = ["QUICK", "SHARED_CASES", "TOLERANCE", "step_times", "shared_table"]

QUICK = {"audio_length": 96, "img_size": 64}  # tiny shapes for --quick (tests)


def step_times(threads: str = "auto", steps: int = 4, warmup_s: float = 3.0, batch: int = 32,
               quick: bool = False, forever: bool = False) -> dict:
    """Time the course's pretraining step (``tiny``, fwd + bwd + AdamW) in this process.

    ``threads``: an int (fixed), ``"auto"`` (:func:`avlib.env.default_threads`, then a
    :class:`~avlib.env.ThreadGovernor` updated every step, as avlib's training loops do) or ``"setup"`` (only
    :func:`avlib.env.setup`, as a notebook's hand-written loop: the governor runs in every module forward).
    Warms up for >= 2 steps and ``warmup_s`` seconds.
    ``forever`` prints ``ready`` after the warm-up, then steps until killed (the competing job)."""
    from avlib.models import create_model

    auto = threads == "auto"
    if threads == "setup":
        n = env.setup(verbose=False).threads
    else:
        n = env.default_threads() if auto else int(threads)
        torch.set_num_threads(n)
    gov = env.ThreadGovernor(fixed=False) if auto else env.process_governor()  # "setup": the hook updates it
    torch.manual_seed(0)
    prof = env.profile("course")
    sizes = QUICK if quick else {"audio_length": prof.target_length, "num_mel_bins": prof.num_mel_bins,
                                 "img_size": prof.image_size}
    model = create_model("tiny", **sizes)
    cfg = model.cfg
    audio = torch.randn(batch, cfg.audio_length, cfg.num_mel_bins)  # [B, T, F]
    video = torch.randn(batch, cfg.in_chans, cfg.img_size, cfg.img_size)  # [B, 3, H, W]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step() -> float:
        t = time.perf_counter()
        loss = model(audio, video, mask_ratio_a=0.75, mask_ratio_v=0.75).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if auto:
            gov.update()
        return time.perf_counter() - t

    t0, done = time.perf_counter(), 0
    while done < 2 or time.perf_counter() - t0 < warmup_s:
        step()
        done += 1
    if forever:
        print("ready", flush=True)
        while True:
            step()
    times = [step() for _ in range(steps)]
    return {"threads": n, "threads_end": torch.get_num_threads(), "step_s": times,
            "history": [k for _, k in gov.history] if gov else [n]}


def _env(threads: str) -> dict:
    """Child environment: no inherited thread settings; a fixed count is passed as AVLIB_THREADS."""
    e = {k: v for k, v in env.child_env().items() if k not in ("AVLIB_THREADS", "OMP_NUM_THREADS")}
    e["PYTHONWARNINGS"] = "ignore"
    if threads not in ("auto", "setup"):
        e["AVLIB_THREADS"] = e["OMP_NUM_THREADS"] = str(threads)
    return e


def _step_cmd(threads: str, a: argparse.Namespace, forever: bool = False) -> list[str]:
    cmd = [sys.executable, "-m", "avlib.shared_cores", str(threads), "--steps", str(a.steps),
           "--batch", str(a.step_batch), "--warmup-s", str(a.warmup_s)]
    return cmd + (["--quick"] if a.quick else []) + (["--forever"] if forever else [])


def _shared_case(threads: str, beside: str | None, a: argparse.Namespace) -> dict:
    """One row of table A: start the competitor (``busy`` loop, an avlib ``job`` with the same thread
    setting, or a ``notebook``: a hand-written loop after ``env.setup()``), wait until it runs, time the step
    in a fresh process, stop the competitor."""
    other = None
    try:
        if beside == "busy":
            other = subprocess.Popen([sys.executable, "-c", "while True: pass"])
            time.sleep(1.0)
        elif beside in ("job", "notebook"):
            kind = threads if beside == "job" else "setup"
            other = subprocess.Popen(_step_cmd(kind, a, forever=True), stdout=subprocess.PIPE, text=True,
                                     env=_env(kind))
            if other.stdout.readline().strip() != "ready":
                raise RuntimeError("the competing avlib job did not start")
        proc = subprocess.run(_step_cmd(threads, a), capture_output=True, text=True, env=_env(threads))
        if proc.returncode != 0:
            raise RuntimeError(f"step benchmark failed:\n{proc.stderr[-3000:]}")
        row = json.loads(proc.stdout.strip().splitlines()[-1])
    finally:
        if other is not None:
            other.kill()
            other.wait()
    return {"threads_setting": threads, "beside": beside, **row}


SHARED_CASES = ((None, "all"), (None, "1"), ("busy", "all"), ("busy", "auto"), ("job", "all"), ("job", "auto"),
                ("notebook", "auto"))
TOLERANCE = 1.10  # "not slower than 1 thread alone", allowing 10 % measurement noise


def shared_table(rows: list[dict]) -> tuple[str, bool]:
    """Table A and whether every automatic shared case is within :data:`TOLERANCE` of 1 thread alone."""
    one = next(r for r in rows if r["beside"] is None and r["threads_setting"] == "1")
    base = statistics.median(one["step_s"])
    what = {None: "alone", "busy": "beside a busy process", "job": "beside a 2nd avlib job",
            "notebook": "beside a notebook's loop"}
    head = f"{'case':26s} {'threads':>9s} {'chosen':>8s} {'s/step':>8s} {'vs 1 thread alone':>18s}"
    lines, ok = [head, "-" * len(head)], True
    for r in rows:
        med = statistics.median(r["step_s"])
        ratio = med / base
        setting = r["threads_setting"]
        chosen = f"{r['threads']}" + (f"->{r['threads_end']}" if r["threads_end"] != r["threads"] else "")
        flag = ""
        if r["beside"] and r["threads_setting"] == "auto":
            good = ratio <= TOLERANCE
            ok &= good
            flag = "  ok" if good else "  SLOWER"
        lines.append(f"{what[r['beside']]:26s} {setting:>9s} {chosen:>8s} {med:8.3f} {ratio:17.2f}x{flag}")
    return "\n".join(lines), ok


def main(argv: list[str] | None = None) -> int:
    """The child process of one case: run :func:`step_times` and print its JSON row; returns 0."""
    p = argparse.ArgumentParser(prog="python -m avlib.shared_cores", description=main.__doc__)
    p.add_argument("threads", help="a fixed count, 'auto' or 'setup'")
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--warmup-s", type=float, default=3.0)
    p.add_argument("--quick", action="store_true", help="tiny shapes (tests)")
    p.add_argument("--forever", action="store_true", help="print 'ready' after the warm-up, then step until killed")
    a = p.parse_args(argv)
    print(json.dumps(step_times(a.threads, a.steps, a.warmup_s, a.batch, a.quick, a.forever)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
