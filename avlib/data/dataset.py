"""``AVDataset``: one clip of a datafile -> a named item (fbank, frame(s), label, index, video id).

::

    ds = AVDataset("<root>/datafiles/train.json", cfg=AVDatasetConfig(train=True, mixup=0.5), seed=0)
    item = ds[0]   # {"audio": [T, F], "video": [3, H, W], "label": [K], "index": 0, "video_id": "..."}
    ds.set_epoch(1)  # new random draws for the next epoch

Randomness: item ``i`` of epoch ``e`` draws from its own ``torch.Generator`` seeded by ``(seed, e, i)``, so an
item is the same whatever the number of ``DataLoader`` workers or the order it is read in.

Audio: ``load_wav -> fbank -> normalize -> pad_or_crop -> (train) spec_augment, noise_and_roll``. Padding and
SpecAugment masks happen after normalisation and use 0 (the dataset mean); the reference pads before
normalising.
Frames: train picks a random one of the 10, eval the middle one (index 5), ``frames="all"`` stacks all 10.
Mixup (train, probability ``mixup``): the partner's waveform is mixed in before the fbank, the partner's
**own**
frame with the same weight (the reference read the partner frame from the wrong folder), labels likewise.
Label smoothing (reference): positives ``1 - s``, negatives ``s / K``, applied before mixup weighting.
Speed: an item is decoded with one torch intra-op thread (the previous setting is restored): its FFTs and
small tensors gain nothing from more threads, and on a busy 2-core machine 2 OpenMP threads made the fbank
~10x slower (measured 1.6-4 ms with 1 thread vs 21-38 ms with 2).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import Dataset

from avlib import audio as A
from avlib import env
from avlib import vision as V
from avlib.data.datafile import (
    LABEL_CSV,
    NUM_FRAMES,
    STATS_FILE,
    Entry,
    LabelSet,
    dataset_root,
    read_datafile,
    read_label_csv,
)

MODALITIES = ("audio", "video")
FRAME_MODES = ("random", "middle", "all")


_prof = env.profile_field


def frame_ids(mode: str, generator: torch.Generator | None = None, num_frames: int = NUM_FRAMES) -> list[int]:
    """Which of a clip's frames to use (CAV-MAE's rule): ``"random"`` one uniform draw (training), ``"middle"``
    frame ``num_frames // 2`` (evaluation), ``"all"`` every frame (test-time aggregation)."""
    if mode == "all":
        return list(range(num_frames))
    if mode == "middle":
        return [num_frames // 2]
    if mode == "random":
        return [int(torch.randint(num_frames, (), generator=generator))]
    raise ValueError(f"unknown frame mode {mode!r}; use 'random', 'middle' or 'all'.")


@dataclass
class AVDatasetConfig:
    """How :class:`AVDataset` turns a clip into tensors. Size defaults come from the active profile."""

    target_length: int = _prof("target_length")  # T after pad/crop
    num_mel_bins: int = _prof("num_mel_bins")  # F
    image_size: int = _prof("image_size")  # H = W of the model input
    sample_rate: int = _prof("sample_rate")
    stats: A.AudioStats | None = None  # None: <root>/audio_stats.json
    train: bool = False  # enables the random frame and the augmentations below
    modalities: tuple[str, ...] = MODALITIES  # which ones to decode and return
    frames: str | None = None  # "random" | "middle" | "all"; None: random when train, else middle
    freqm: int = 0  # SpecAugment frequency mask width (train only; CAV-MAE fine-tuning: 48)
    timem: int = 0  # SpecAugment time mask width (train only; CAV-MAE fine-tuning: 192 for T = 1024)
    noise: bool = False  # CAV-MAE noise + time roll (train only)
    mixup: float = 0.0  # probability of mixup per item (train only; CAV-MAE fine-tuning: 0.5)
    mixup_alpha: float = 10.0  # lam ~ Beta(alpha, alpha)
    label_smoothing: float = 0.0  # CAV-MAE fine-tuning: 0.1
    augment_video: bool = False  # random resized crop + flip (train only; the reference has none)
    label_fraction: float | None = None  # keep this fraction of the clips (per class, deterministic)

    def __post_init__(self):
        self.modalities = tuple(self.modalities)
        bad = [m for m in self.modalities if m not in MODALITIES]
        if bad or not self.modalities:
            raise ValueError(f"modalities must be a non-empty subset of {MODALITIES}, got {self.modalities}.")
        if self.frames is not None and self.frames not in FRAME_MODES:
            raise ValueError(f"frames must be one of {FRAME_MODES} or None, got {self.frames!r}.")
        if self.target_length <= 0 or self.target_length % 16:
            raise ValueError(f"target_length must be a positive multiple of 16 (the patch size), "
                             f"got {self.target_length}.")
        if not 0.0 <= self.mixup <= 1.0 or not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"mixup must be in [0, 1] and label_smoothing in [0, 1); got {self.mixup}, "
                             f"{self.label_smoothing}.")
        if self.label_fraction is not None and not 0.0 < self.label_fraction <= 1.0:
            raise ValueError(f"label_fraction must be in (0, 1] or None, got {self.label_fraction}.")
        if isinstance(self.stats, dict):
            self.stats = A.AudioStats.from_dict(self.stats)

    @property
    def frame_mode(self) -> str:
        return self.frames or ("random" if self.train else "middle")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["modalities"] = list(self.modalities)
        return d


@contextmanager
def single_thread() -> Iterator[None]:
    """Run the block with one torch intra-op thread, then restore the previous count."""
    n = torch.get_num_threads()
    if n == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def _item_seed(seed: int, epoch: int, index: int) -> int:
    """A well-mixed 63-bit seed for ``(seed, epoch, index)`` (splitmix64 finaliser)."""
    x = (seed * 0x9E3779B97F4A7C15 + epoch * 0xBF58476D1CE4E5B9 + index * 0x94D049BB133111EB) & (2**64 - 1)
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) & (2**64 - 1)
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) & (2**64 - 1)
    x ^= x >> 31
    return x & (2**63 - 1)


def select_fraction(targets: Tensor, fraction: float, seed: int = 0) -> list[int]:
    """Indices of a deterministic ``fraction`` of the rows of ``targets`` ``[N, K]``, per class (by the first
    positive label; unlabelled rows form their own group), at least one per non-empty group, sorted.
    Subsets are nested: with the same seed a smaller fraction keeps a subset of a larger one."""
    if not 0 < fraction <= 1:
        raise ValueError(f"label fraction must be in (0, 1], got {fraction}.")
    g = torch.Generator().manual_seed(seed)
    has = targets.sum(1) > 0  # [N]
    group = torch.where(has, targets.argmax(1), torch.full_like(has, -1, dtype=torch.long))  # [N]
    keep: list[int] = []
    for c in torch.unique(group).tolist():
        idx = torch.nonzero(group == c).flatten()
        n = max(1, round(fraction * len(idx)))
        keep += idx[torch.randperm(len(idx), generator=g)[:n]].tolist()
    return sorted(keep)


class AVDataset(Dataset):
    """Clips of a datafile as named items; see the module docstring.

    ``datafile`` is ``<root>/datafiles/<split>.json``; ``label_csv`` defaults to ``<root>/labels.csv``;
    ``cfg.stats`` defaults to ``<root>/audio_stats.json``. Unknown labels raise at construction; unreadable
    media raise when the item is read, naming the file. A missing frame file (e.g. an empty ``frame_7/``) is
    replaced by the nearest existing frame of the same clip, with a warning, and recorded in
    ``missing_frames`` (``{(video_id, i): frame used}``, in the process that read the item); a clip with no
    frame at all raises.
    """

    def __init__(self, datafile: str | Path, label_csv: str | Path | None = None,
                 cfg: AVDatasetConfig | None = None, seed: int = 0):
        self.datafile = Path(datafile)
        self.cfg = cfg = cfg or AVDatasetConfig()
        self.seed, self.epoch = int(seed), 0
        self.root = dataset_root(self.datafile)
        self.labels: LabelSet = read_label_csv(Path(label_csv) if label_csv else self.root / LABEL_CSV)
        entries = read_datafile(self.datafile)
        if not entries:
            raise ValueError(f"datafile {self.datafile} lists no clips.")
        self.targets = torch.stack([  # [N, K] multi-hot, before smoothing
            self.labels.encode(e.labels, where=f"datafile {self.datafile}, video_id {e.video_id!r}")
            for e in entries])
        if cfg.label_fraction is not None and cfg.label_fraction < 1.0:
            keep = select_fraction(self.targets, cfg.label_fraction, self.seed)
            entries, self.targets = [entries[i] for i in keep], self.targets[keep]
        self.entries: list[Entry] = entries
        if "audio" in cfg.modalities:
            self.stats = cfg.stats or A.AudioStats.load(self.root / STATS_FILE)
        else:
            self.stats = cfg.stats
        self.transform = V.FrameTransform(cfg.image_size, augment=cfg.train and cfg.augment_video)
        # (video_id, missing frame index) -> the frame used instead; filled as items are read (per process)
        self.missing_frames: dict[tuple[str, int], int] = {}

    # --------------------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.entries)

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def set_epoch(self, epoch: int) -> None:
        """Use the random draws of ``epoch`` from now on (call it before each training epoch)."""
        self.epoch = int(epoch)

    def generator(self, index: int) -> torch.Generator:
        """The generator item ``index`` draws from in the current epoch."""
        return torch.Generator().manual_seed(_item_seed(self.seed, self.epoch, index))

    def __repr__(self) -> str:
        c = self.cfg
        return (f"AVDataset({self.datafile}, {len(self)} clips, {self.num_classes} classes, "
                f"modalities={c.modalities}, train={c.train}, frames={c.frame_mode!r})")

    # --------------------------------------------------------------------------------------------------------
    def _label(self, index: int) -> Tensor:
        y = self.targets[index]  # [K]
        s = self.cfg.label_smoothing
        if s > 0:
            y = torch.where(y > 0, 1.0 - s, s / self.num_classes)
        return y

    def _fbank(self, wave: Tensor, g: torch.Generator) -> Tensor:
        c = self.cfg
        fb = A.fbank(wave, c.sample_rate, c.num_mel_bins)  # [T', F]
        fb = A.pad_or_crop(A.normalize(fb, self.stats), c.target_length)  # [T, F]
        if c.train:
            if c.freqm or c.timem:
                fb = A.spec_augment(fb, c.freqm, c.timem, g)
            if c.noise:
                fb = A.noise_and_roll(fb, g)
        return fb

    def _frame_ids(self, g: torch.Generator) -> list[int]:
        return frame_ids(self.cfg.frame_mode, g)

    def _frames(self, entry: Entry, ids: Sequence[int]) -> Tensor:
        if not entry.video_path:
            raise ValueError(f"datafile {self.datafile}: clip {entry.video_id!r} has an empty 'video_path'; "
                             "give the folder holding frame_<i>/ or use modalities=('audio',).")
        imgs = [self._load_frame(entry, i) for i in ids]  # each [3, H, W] uint8
        if len(imgs) == 1:
            return imgs[0]
        if any(im.shape != imgs[0].shape for im in imgs):
            imgs = [V.resize_center_crop(im, self.cfg.image_size) for im in imgs]
        return torch.stack(imgs)  # [V, 3, H, W]

    def _load_frame(self, entry: Entry, i: int) -> Tensor:
        """Frame ``i`` of a clip; a missing one is replaced by the nearest existing frame (the earlier one on
        a tie), with a warning (once per clip and frame) and a count in :attr:`missing_frames`."""
        path = entry.frame_path(i)
        if not path.is_file():
            near = sorted((abs(j - i), j) for j in range(NUM_FRAMES) if j != i and entry.frame_path(j).is_file())
            if not near:
                raise FileNotFoundError(f"frame {path} does not exist, nor any other frame_<0..{NUM_FRAMES - 1}>"
                                        f" of clip {entry.video_id!r} ({self.datafile}); re-extract its frames "
                                        "or drop it from the datafile.")
            j = near[0][1]
            if (entry.video_id, i) not in self.missing_frames:
                warnings.warn(f"clip {entry.video_id!r}: frame {path} is missing; using frame_{j} instead "
                              f"(the nearest). AVDataset.missing_frames counts such clips.", stacklevel=4)
            self.missing_frames[(entry.video_id, i)] = j
            path = entry.frame_path(j)
        return V.load_frame(path, self.cfg.image_size)  # large JPEGs decoded at reduced size

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} clips")
        with single_thread():
            return self._item(index)

    def _mixup_draw(self, g: torch.Generator) -> tuple[int | None, float]:
        """(partner index or None, lambda): the item's mixup draw, first from its generator ``g``."""
        c = self.cfg
        if c.train and c.mixup > 0 and float(torch.rand((), generator=g)) < c.mixup:
            return int(torch.randint(len(self), (), generator=g)), A.sample_mixup_lambda(g, c.mixup_alpha)
        return None, 1.0

    def _item(self, index: int) -> dict:
        c, entry = self.cfg, self.entries[index]
        g = self.generator(index)
        partner, lam = self._mixup_draw(g)
        item: dict = {}
        if "audio" in c.modalities:
            if not entry.wav:
                raise ValueError(f"datafile {self.datafile}: clip {entry.video_id!r} has an empty 'wav'; "
                                 "give its audio file or use modalities=('video',).")
            wave = A.load_wav(entry.wav, c.sample_rate)  # [S]
            if partner is not None:
                wave = A.mix_waves(wave, A.load_wav(self.entries[partner].wav, c.sample_rate), lam)
            item["audio"] = self._fbank(wave, g)  # [T, F]
        if "video" in c.modalities:
            ids = self._frame_ids(g)
            img = self.transform(self._frames(entry, ids), g)  # [3, H, W] or [V, 3, H, W]
            if partner is not None:
                img2 = self.transform(self._frames(self.entries[partner], self._frame_ids(g)), g)
                img = lam * img + (1.0 - lam) * img2
            item["video"] = img
        return self._finish(item, index, partner, lam)

    def _finish(self, item: dict, index: int, partner: int | None, lam: float) -> dict:
        """Add the (mixed) label ``[K]``, the index and the video id to an item."""
        y = self._label(index)
        if partner is not None:
            y = lam * y + (1.0 - lam) * self._label(partner)
        item.update(label=y, index=index, video_id=self.entries[index].video_id)
        return item
