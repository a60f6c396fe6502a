"""Run-time environment: seeding, device, threads, and the course *profile*.

Every notebook starts with ``avlib.env.setup()``. The profile (``AVLIB_PROFILE``) decides sizes and step counts
so that notebooks never hard-code epochs:

* ``ci``     - seconds per notebook; what the tests and CI run.
* ``course`` - the default: the whole course in <= 30 minutes on 2 CPU cores.
* ``paper``  - CAV-MAE base sizes and recipe, for a GPU.

Environment variables: ``AVLIB_PROFILE``, ``AVLIB_DEVICE`` (``cpu`` | ``cuda`` | ``cuda:1`` | ``mps``),
``AVLIB_THREADS`` (torch intra-op threads), ``AVLIB_DATA`` (where the generated dataset lives).
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import platform
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

PROFILES = ("ci", "course", "paper")
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
    contrast_loss_weight: float = 0.01  # pretraining InfoNCE weight (0.1 stalls the video MAE, see train.py)
    demo_steps: int = 20  # optimisation steps of the small training demos inside notebooks

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
    "course": Profile(
        name="course", clip_seconds=4.0, sample_rate=16000, num_mel_bins=128, target_length=400,
        frame_size=96, image_size=96,
        clips_per_class={"unlabeled": 60, "train": 20, "val": 10, "test": 10},
        mp4_clips=4, model="tiny", batch_size=32, pretrain_epochs=30, finetune_epochs=10, demo_steps=400,
        contrast_loss_weight=0.01,
    ),
    "paper": Profile(
        name="paper", clip_seconds=10.0, sample_rate=16000, num_mel_bins=128, target_length=1024,
        frame_size=224, image_size=224,
        clips_per_class={"unlabeled": 400, "train": 100, "val": 20, "test": 40},
        mp4_clips=8, model="base", batch_size=48, pretrain_epochs=25, finetune_epochs=10, demo_steps=2000,
        contrast_loss_weight=0.01,
    ),
}


def profile_name() -> str:
    """The active profile name from ``AVLIB_PROFILE`` (default ``course``)."""
    name = os.environ.get("AVLIB_PROFILE", "course").strip().lower()
    if name not in _PROFILES:
        raise ValueError(f"AVLIB_PROFILE={name!r} is not a profile; choose one of {', '.join(PROFILES)}.")
    return name


def profile(name: str | None = None) -> Profile:
    """Sizes and steps of profile ``name`` (default: the active one, see :func:`profile_name`)."""
    name = name or profile_name()
    if name not in _PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}.")
    return _PROFILES[name]


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


def default_threads() -> int:
    """``AVLIB_THREADS``, else ``OMP_NUM_THREADS``, else all cores up to 8 (2 on the course's laptops/CI)."""
    for var in ("AVLIB_THREADS", "OMP_NUM_THREADS"):
        if os.environ.get(var, "").strip():
            return max(1, int(os.environ[var]))
    return max(1, min(8, os.cpu_count() or 1))


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

    Returns a :class:`Setup` whose ``generator`` is a seeded CPU ``torch.Generator`` for explicit randomness.
    """
    if profile_name_ is not None:
        os.environ["AVLIB_PROFILE"] = profile_name_
    prof = profile()
    n = threads or default_threads()
    torch.set_num_threads(n)
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
# import name -> (distribution name, minimum version); keep in step with requirements.txt
REQUIRED: dict[str, tuple[str, str]] = {
    "torch": ("torch", "2.14"),
    "torchvision": ("torchvision", "0.29"),
    "torchaudio": ("torchaudio", "2.11"),
    "timm": ("timm", "1.0"),
    "einops": ("einops", "0.8"),
    "numpy": ("numpy", "1.26"),
    "safetensors": ("safetensors", "0.4"),
    "tqdm": ("tqdm", "4.66"),
    "av": ("av", "14.0"),
    "soundfile": ("soundfile", "0.12"),
    "PIL": ("pillow", "10.0"),
    "matplotlib": ("matplotlib", "3.8"),
    "seaborn": ("seaborn", "0.13"),
    "sklearn": ("scikit-learn", "1.4"),
    "ipywidgets": ("ipywidgets", "8.1"),
    "tinysoundfont": ("tinysoundfont", "0.3.7"),
    "pretty_midi": ("pretty_midi", "0.2.10"),
}


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

    here = Path(__file__).resolve().parent
    where = "this repository (editable install)" if (ROOT / "pyproject.toml").exists() else str(here)
    lines = [f"python {platform.python_version()} on {platform.platform()}", f"avlib {_version()} from {where}"]
    ok_all = True
    for mod, (dist, minimum) in REQUIRED.items():
        try:
            importlib.import_module(mod)
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
