"""Run-time environment: seeding, device, threads, and the course *profile*.

Every notebook starts with ``avlib.env.setup()``. The profile (``AVLIB_PROFILE``) decides sizes and step counts
so that notebooks never hard-code epochs:

* ``ci``     - seconds per notebook; what the tests and CI run.
* ``course`` - the default: the whole course in <= 30 minutes on 2 CPU cores.
* ``paper``  - CAV-MAE base sizes and recipe, for a GPU.
* ``gpu``    - the whole ``make run`` in <= 10 minutes on one H100-class GPU (``small`` model, paper input sizes).

Environment variables: ``AVLIB_PROFILE`` (``setup(profile_name_=...)`` overrides it in this process only),
``AVLIB_DEVICE`` (``cpu`` | ``cuda`` | ``cuda:1`` | ``mps``), ``AVLIB_THREADS`` (torch intra-op threads),
``AVLIB_DATA`` (where the generated dataset lives).

Threads: unless ``AVLIB_THREADS`` / ``OMP_NUM_THREADS`` fix them, :func:`default_threads` takes the cores of
the affinity mask that other processes leave free, and training loops keep that fair with a
:class:`ThreadGovernor` (two jobs on 2 cores settle at 1 thread each instead of oversubscribing).
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import os
import platform
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

PROFILES = ("ci", "course", "paper", "gpu")
ROOT = Path(__file__).resolve().parent.parent  # repository root (avlib is installed in editable mode)


@dataclass(frozen=True)
class Profile:
    """Sizes and step counts of one profile. Read it with :func:`profile`; never hard-code them."""

    name: str
    # --- data: the generated "orchestra" ---------------------------------------------------------------------
    clip_seconds: float  # length of each generated clip
    sample_rate: int  # Hz, mono
    num_mel_bins: int  # F
    target_length: int  # T, fbank frames after pad/crop (multiple of 16)
    frame_size: int  # stored frames are frame_size x frame_size JPEGs
    image_size: int  # model input H = W
    clips_per_class: dict[str, int] = field(default_factory=dict)  # split -> clips per class
    mp4_clips: int = 4  # how many clips are also written as .mp4
    # --- model -----------------------------------------------------------------------------------------------
    model: str = "tiny"  # named config for avlib.models.create_model
    # --- training --------------------------------------------------------------------------------------------
    batch_size: int = 16
    pretrain_epochs: int = 1
    finetune_epochs: int = 1
    contrast_loss_weight: float = 0.01  # pretraining InfoNCE weight λc (the reference's 0.01; course: see below)
    demo_steps: int = 20  # optimisation steps of the small training demos inside notebooks
    num_workers: int = 0  # DataLoader worker processes of the training loops
    cache: bool = False  # training reads the decoded-tensor cache (avlib.data.cache) instead of media files

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


_PROFILES: dict[str, Profile] = {
    "ci": Profile(
        name="ci", clip_seconds=1.0, sample_rate=16000, num_mel_bins=128, target_length=96,
        frame_size=64, image_size=64,
        clips_per_class={"unlabeled": 6, "train": 4, "val": 2, "test": 2},
        mp4_clips=2, model="tiny", batch_size=8, pretrain_epochs=1, finetune_epochs=1, demo_steps=20,
        contrast_loss_weight=0.01,
    ),
    # course: decoding media (WAV + kaldi fbank + JPEGs) gives 215 training items/s on 2 cores, 0.11 s of a
    # 0.73-s AV fine-tuning step at batch 32; the decoded-tensor cache removes it (built once per split, ~12 s)
    "course": Profile(
        name="course", clip_seconds=4.0, sample_rate=16000, num_mel_bins=64, target_length=256,
        frame_size=96, image_size=96,
        clips_per_class={"unlabeled": 100, "train": 100, "val": 10, "test": 15},
        mp4_clips=4, model="tiny", batch_size=32, pretrain_epochs=8, finetune_epochs=9, demo_steps=400,
        contrast_loss_weight=1.0, cache=True,  # λc: measured in avlib.experiments (PRETRAIN_RECIPE's comment)
    ),
    "paper": Profile(
        name="paper", clip_seconds=10.0, sample_rate=16000, num_mel_bins=128, target_length=1024,
        frame_size=224, image_size=224,
        clips_per_class={"unlabeled": 400, "train": 100, "val": 20, "test": 40},
        mp4_clips=8, model="base", batch_size=48, pretrain_epochs=25, finetune_epochs=10, demo_steps=2000,
        contrast_loss_weight=0.01,
    ),
    # one H100-class GPU: `make run` (generation included) sized for <= 10 minutes (an estimate, not yet run:
    # generation ~0.23 CPU s per clip, 1,755 clips; `small` steps at batch 64); the decoded-tensor cache and 8
    # loader workers keep the GPU fed (media decoding made the course pipeline data-bound there, issue 16)
    "gpu": Profile(
        name="gpu", clip_seconds=10.0, sample_rate=16000, num_mel_bins=128, target_length=1024,
        frame_size=224, image_size=224,
        clips_per_class={"unlabeled": 80, "train": 30, "val": 10, "test": 15},
        mp4_clips=4, model="small", batch_size=64, pretrain_epochs=30, finetune_epochs=12, demo_steps=1000,
        contrast_loss_weight=0.01, num_workers=8, cache=True,
    ),
}


_active_profile: str | None = None  # set by use_profile / setup(profile_name_=...); wins over AVLIB_PROFILE


def profile_name() -> str:
    """The active profile name: the one chosen in this process (:func:`use_profile`, ``setup(profile_name_=...)``),
    else ``AVLIB_PROFILE`` (default ``course``)."""
    if _active_profile is not None:
        return _active_profile
    name = os.environ.get("AVLIB_PROFILE", "course").strip().lower()
    if name not in _PROFILES:
        raise ValueError(f"AVLIB_PROFILE={name!r} is not a profile; choose one of {', '.join(PROFILES)}.")
    return name


def use_profile(name: str | None) -> None:
    """Make profile ``name`` the active one in this process, over ``AVLIB_PROFILE`` (``None``: back to the
    variable). The process environment is left alone; subprocesses get the profile through :func:`child_env`."""
    global _active_profile
    if name is not None:
        name = name.strip().lower()
        if name not in _PROFILES:
            raise ValueError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}.")
    _active_profile = name


def child_env(**overrides: str) -> dict[str, str]:
    """The environment for a subprocess: a copy of ``os.environ`` plus ``AVLIB_PROFILE`` when this process chose
    its profile (:func:`use_profile`), so the child runs the same one; then ``overrides``."""
    chosen = {"AVLIB_PROFILE": _active_profile} if _active_profile is not None else {}
    return {**os.environ, **chosen, **overrides}


def profile(name: str | None = None) -> Profile:
    """Sizes and steps of profile ``name`` (default: the active one, see :func:`profile_name`)."""
    name = name or profile_name()
    if name not in _PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}.")
    return _PROFILES[name]


def profile_field(name: str, transform=None):
    """A dataclass field whose default is the active profile's ``name`` (read when the object is made), passed
    through ``transform`` if given: the configs of the data and training code default to the profile this way."""
    return field(default_factory=lambda: (transform or (lambda x: x))(getattr(profile(), name)))


def data_root() -> Path:
    """Where generated datasets live: ``$AVLIB_DATA`` or ``<repo>/data/generated``."""
    return Path(os.environ.get("AVLIB_DATA", ROOT / "data" / "generated"))


def display_path(path: str | Path) -> str:
    """``path`` relative to the repository when it lies inside it (for messages and notebook outputs)."""
    p = Path(path).resolve()
    try:
        return str(p.relative_to(ROOT))
    except ValueError:
        return str(path)


def pick_device(requested: str | None = None) -> torch.device:
    """``AVLIB_DEVICE`` (or ``requested``) if set, else cuda -> mps -> cpu."""
    requested = requested or os.environ.get("AVLIB_DEVICE")
    if requested:
        dev = torch.device(requested)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"AVLIB_DEVICE={requested!r} but CUDA is not available; unset it or use 'cpu'.")
        if dev.type == "mps" and not torch.backends.mps.is_available():
            raise RuntimeError(f"AVLIB_DEVICE={requested!r} but MPS is not available; unset it or use 'cpu'.")
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


# --------------------------------------------------------------------------------------------------------------
# threads: never oversubscribe the cores (issue 16)
# --------------------------------------------------------------------------------------------------------------
MAX_THREADS = 8  # more intra-op threads rarely help the course's small matrices


def cpu_slots() -> list[int]:
    """The CPUs this process may run on (its affinity mask; all CPUs where the OS has no affinity API)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS, Windows
        return list(range(os.cpu_count() or 1))


def explicit_threads() -> int | None:
    """``AVLIB_THREADS``, else ``OMP_NUM_THREADS``, as an int >= 1; None when neither is set."""
    for var in ("AVLIB_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(var, "").strip()
        if value:
            try:
                return max(1, int(value))
            except ValueError:
                raise ValueError(f"{var}={value!r} is not a whole number of threads; unset it or use e.g. "
                                 f"{var}=2.") from None
    return None


def fair_threads(cores: int, busy_elsewhere: float | None, cap: int = MAX_THREADS) -> int:
    """Intra-op threads that fit beside the other work: ``cores`` minus the cores other processes keep busy
    (rounded half up), at least 1 and at most ``cap``. ``busy_elsewhere=None`` (unknown) counts as 0."""
    taken = math.floor((busy_elsewhere or 0.0) + 0.5)
    return max(1, min(cap, cores - taken))


class CpuUsage:
    """How many of this process's CPUs *other* processes keep busy, from ``/proc/stat`` (Linux).

    Each :meth:`sample` returns the busy cores of the affinity CPUs since the previous sample, minus this
    process's own CPU time (all its threads). Time of processes running at a lower priority (a higher
    ``nice``) than this one is not counted: they yield their core to us. ``available`` is False where
    ``/proc/stat`` is missing (macOS, Windows); :meth:`sample` then returns None.
    """

    def __init__(self, cpus: list[int] | None = None):
        self.cpus = set(cpu_slots() if cpus is None else cpus)
        self.count_nice = _own_nice() > 0  # a niced avlib competes with other niced work, not with nice 0
        self._hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self.available = Path("/proc/stat").is_file()
        self._last = self._read() if self.available else None

    def _read(self) -> tuple[float, float, float]:
        """(busy seconds of our CPUs, wall seconds, our own CPU seconds)."""
        busy = 0.0
        with open("/proc/stat") as f:
            for line in f:
                if not line.startswith("cpu"):
                    break  # the per-CPU lines come first
                name, *vals = line.split()
                if name == "cpu" or int(name[3:]) not in self.cpus:
                    continue
                user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in vals[:8])
                busy += user + system + irq + softirq + steal + (nice if self.count_nice else 0)
        return busy / self._hz, time.monotonic(), time.process_time()

    def sample(self) -> float | None:
        """Cores busy with other processes since the last sample (or construction); None if unknown."""
        if not self.available:
            return None
        now = self._read()
        (b0, w0, o0), (b1, w1, o1) = self._last, now
        self._last = now
        if w1 - w0 <= 0:
            return None
        return max(0.0, ((b1 - b0) - (o1 - o0)) / (w1 - w0))


def _own_nice() -> int:
    try:
        return os.getpriority(os.PRIO_PROCESS, 0)
    except (AttributeError, OSError):
        return 0


def default_threads(window_s: float = 0.1) -> int:
    """Torch intra-op threads for a new job: ``AVLIB_THREADS`` / ``OMP_NUM_THREADS`` if set, else the cores of
    the affinity mask that other processes leave free, measured over ``window_s`` seconds (at least 1, at
    most 8). So a notebook started while ``make run`` trains on both cores of a 2-core laptop takes 1 thread
    instead of doubling the load (which made each step up to 10x slower, issue 16)."""
    n = explicit_threads()
    if n is not None:
        return n
    cpus = cpu_slots()
    usage = CpuUsage(cpus)
    if usage.available and window_s > 0:
        time.sleep(window_s)
    return fair_threads(len(cpus), usage.sample() if usage.available else None)


class ThreadGovernor:
    """Keeps a training loop's torch threads fair while other jobs come and go; call :meth:`update` once per
    step (cheap: it looks at ``/proc/stat`` at most every ``interval_s`` seconds).

    It sheds threads as soon as other processes keep cores busy (a second ``make run``, a notebook training,
    any busy program) and takes them back after ``grow_after`` checks in a row found the cores free. Fixed
    counts are left alone: with ``AVLIB_THREADS`` / ``OMP_NUM_THREADS`` set, or ``fixed=True``, it does nothing.
    Two governed jobs on 2 cores settle at 1 thread each, which is never slower than 1 thread alone, whereas
    2 + 2 threads on 2 cores made every step ~10x slower. ``history`` records ``(monotonic time, threads)``
    at every change.
    """

    def __init__(self, interval_s: float = 1.0, grow_after: int = 3, fixed: bool | None = None,
                 cap: int = MAX_THREADS):
        self.fixed = explicit_threads() is not None if fixed is None else fixed
        self.interval_s, self.grow_after, self.cap = interval_s, grow_after, cap
        self.cpus = cpu_slots()
        self.usage = CpuUsage(self.cpus)
        self._next = time.monotonic() + interval_s
        self._agree = 0
        self.threads = torch.get_num_threads()
        self.history: list[tuple[float, int]] = [(time.monotonic(), self.threads)]

    @property
    def active(self) -> bool:
        return not self.fixed and self.usage.available

    def update(self, force: bool = False) -> int:
        """Re-check the cores if ``interval_s`` has passed (or ``force``); set and return the thread count."""
        if not self.active:
            return torch.get_num_threads()
        now = time.monotonic()
        if not force and now < self._next:
            return self.threads
        self._next = now + self.interval_s
        want = fair_threads(len(self.cpus), self.usage.sample(), self.cap)
        current = torch.get_num_threads()
        if want < current:
            self._agree = 0
            self._set(want)
        elif want > current:
            self._agree += 1
            if self._agree >= self.grow_after:
                self._agree = 0
                self._set(want)
        else:
            self._agree = 0
        return self.threads

    def _set(self, n: int) -> None:
        torch.set_num_threads(n)
        self.threads = n
        self.history.append((time.monotonic(), n))


_GOVERNOR: ThreadGovernor | None = None  # the process-wide governor of govern_threads()
_GOVERNOR_HOOK = None  # its handle from torch's global module forward pre-hook


def govern_threads(on: bool = True, interval_s: float = 1.0) -> ThreadGovernor | None:
    """Keep *any* model code in this process fair to the other jobs on the machine, not only avlib's training
    loops: a :class:`ThreadGovernor` checked (at most every ``interval_s`` s) before every ``nn.Module``
    forward, through torch's public ``register_module_forward_pre_hook``. :func:`setup` turns it on when the
    thread count was chosen automatically, so a notebook's hand-written loop sheds threads when ``make run``
    starts beside it (before: notebook 2 + job 1 threads on 2 cores made the job 1.5x slower than 1 thread
    alone, issue 16). ``on=False`` removes it. Returns the governor (None when off or when the count is fixed
    by ``AVLIB_THREADS`` / ``OMP_NUM_THREADS``)."""
    global _GOVERNOR, _GOVERNOR_HOOK
    if _GOVERNOR_HOOK is not None:
        _GOVERNOR_HOOK.remove()
    _GOVERNOR = _GOVERNOR_HOOK = None
    if on and explicit_threads() is None:
        _GOVERNOR = ThreadGovernor(interval_s=interval_s, fixed=False)
        _GOVERNOR_HOOK = torch.nn.modules.module.register_module_forward_pre_hook(_govern_hook)
    return _GOVERNOR


def process_governor() -> ThreadGovernor | None:
    """The governor :func:`govern_threads` installed in this process (None when off). avlib's training loops
    use it too, so one process keeps one view of the cores."""
    return _GOVERNOR


def _forget_governor_in_child() -> None:
    """A forked child (a DataLoader worker, whose transforms are modules too) keeps the thread count it was
    given: the parent's governor must not grow its threads."""
    global _GOVERNOR
    _GOVERNOR = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_governor_in_child)


def _govern_hook(module: torch.nn.Module, args: tuple) -> None:
    """Global forward pre-hook: let the process governor re-check the cores (cheap between checks)."""
    if _GOVERNOR is not None and not torch.compiler.is_compiling():  # compiled graphs stay whole
        _GOVERNOR.update()


def seed_everything(seed: int = 0) -> torch.Generator:
    """Seed python, numpy and torch (all devices); return a fresh CPU ``torch.Generator`` seeded with ``seed``."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    return torch.Generator().manual_seed(seed)


def cpu_supports_bf16() -> bool:
    """True if this CPU has native bf16 matrix instructions (bf16 autocast then speeds up training)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:  # macOS / Windows: be conservative
        return platform.machine().lower() in ("arm64", "aarch64") and sys.platform == "darwin"
    return any(f in flags for f in ("avx512_bf16", "amx_bf16"))


@dataclass(frozen=True)
class Setup:
    """What :func:`setup` chose."""

    seed: int
    device: torch.device
    threads: int
    profile: Profile
    generator: torch.Generator = field(repr=False)

    def summary(self) -> str:
        return (f"avlib {_version()} | profile={self.profile.name} | device={self.device} | "
                f"threads={self.threads} | seed={self.seed} | torch {torch.__version__}")


def setup(seed: int = 0, *, device: str | None = None, threads: int | None = None,
          profile_name_: str | None = None, verbose: bool = True) -> Setup:
    """Seed everything, pick the device, set torch threads and the profile; print one summary line.

    Without ``threads`` (and without ``AVLIB_THREADS`` / ``OMP_NUM_THREADS``) the count is the cores other
    processes leave free, and :func:`govern_threads` keeps it fair while jobs come and go.

    ``profile_name_`` makes that profile the active one in this process (:func:`use_profile`); without it the
    active profile stays as it is (``AVLIB_PROFILE`` unless chosen before).

    Returns a :class:`Setup` whose ``generator`` is a seeded CPU ``torch.Generator`` for explicit randomness.
    """
    if profile_name_ is not None:
        use_profile(profile_name_)  # in this process only: os.environ is not written
    prof = profile()
    n = threads or default_threads()
    torch.set_num_threads(n)
    govern_threads(threads is None)  # automatic counts follow the machine's load in every forward
    gen = seed_everything(seed)
    s = Setup(seed=seed, device=pick_device(device), threads=n, profile=prof, generator=gen)
    _inline_figures()
    if verbose:
        print(s.summary())
    return s


def _inline_figures() -> None:
    """Inside Jupyter, show matplotlib figures (also the Figure objects avlib.plots returns) as inline PNGs."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    ip = get_ipython()
    if ip is not None and getattr(ip, "kernel", None) is not None:
        ip.run_line_magic("matplotlib", "inline")


# --------------------------------------------------------------------------------------------------------------
# environment check (learners paste its output into bug reports)
# --------------------------------------------------------------------------------------------------------------
# distribution -> import name, where they differ
_IMPORT_NAMES = {"pillow": "PIL", "scikit-learn": "sklearn", "ipython": "IPython", "pytest-xdist": "xdist"}
_CHECKED_ROLES = ("core", "nb", "data")  # what learners need (the tests check the test tools)


def _requirements(files: tuple[str, ...] = ("requirements.txt", "requirements-nodeps.txt")
                  ) -> tuple[dict[str, tuple[str, str]], set[str]]:
    """Read the one dependency list: ``{import name: (distribution, minimum version)}`` of the lines whose
    comment starts with a role in :data:`_CHECKED_ROLES`, and the import names of the ``data`` role (packages
    that only ship files: checked as installed, never imported)."""
    import re

    required, data_only = {}, set()
    for f in files:
        path = ROOT / f
        for line in path.read_text().splitlines() if path.is_file() else []:
            spec, _, comment = line.partition("#")
            m = re.match(r"\s*([A-Za-z0-9_.\-]+)\s*(?:[=>]=\s*([0-9][^\s,;]*))?", spec)
            role = comment.strip().split(":")[0].strip()
            if not spec.strip() or m is None or role not in _CHECKED_ROLES:
                continue
            mod = _IMPORT_NAMES.get(m.group(1).lower(), m.group(1).replace("-", "_"))
            required[mod] = (m.group(1), m.group(2) or "0")
            if role == "data":
                data_only.add(mod)
    return required, data_only


# import name -> (distribution name, minimum version), from requirements*.txt
REQUIRED, _DATA_ONLY = _requirements()


def _version() -> str:
    from avlib import __version__

    return __version__


def _parse(v: str) -> tuple[int, ...]:
    out = []
    for part in v.replace("+", ".").split("."):
        digits = "".join(ch for ch in part if ch.isdigit())
        if not digits:
            break
        out.append(int(digits))
    return tuple(out)


def check(verbose: bool = True) -> bool:
    """Print python/platform/device facts and ``[OK]``/``[FAIL]`` per required package; return True if all OK."""
    from importlib import metadata
    from importlib.util import find_spec

    here = Path(__file__).resolve().parent
    where = "this repository (editable install)" if (ROOT / "pyproject.toml").exists() else str(here)
    lines = [f"python {platform.python_version()} on {platform.platform()}", f"avlib {_version()} from {where}"]
    ok_all = True
    for mod, (dist, minimum) in REQUIRED.items():
        try:
            if mod not in _DATA_ONLY:
                importlib.import_module(mod)
            elif find_spec(mod) is None:
                raise ModuleNotFoundError(f"No module named {mod!r}")
            ver = metadata.version(dist)
            ok = _parse(ver) >= _parse(minimum)
            lines.append(f"[{'OK' if ok else 'FAIL'}] {dist} {ver}" + ("" if ok else f" (need >= {minimum})"))
        except Exception as e:  # noqa: BLE001 - report any import problem
            ok = False
            lines.append(f"[FAIL] {dist}: {type(e).__name__}: {e}")
        ok_all &= ok
    cuda = torch.cuda.is_available()
    lines.append(f"cuda available: {cuda}" + (f" ({torch.cuda.get_device_name(0)})" if cuda else ""))
    lines.append(f"cpu bf16: {cpu_supports_bf16()} | threads: {torch.get_num_threads()} | "
                 f"profile: {profile_name()}")
    if verbose:
        print("\n".join(lines))
    return ok_all
