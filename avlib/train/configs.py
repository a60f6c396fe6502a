"""Training configs (:class:`PretrainConfig`, :class:`FinetuneConfig`; sizes default to the active profile) and
the :class:`TrainResult` both loops return."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from avlib import env
from avlib.checkpoint import to_plain

__all__ = ["PretrainConfig", "FinetuneConfig", "TrainResult"]


_prof = env.profile_field


@dataclass
class _Common:
    """Fields shared by both loops. Sizes default to the active profile (``AVLIB_PROFILE``)."""

    data: str | None = None  # dataset root (holds datafiles/); None: generate / reuse the profile's dataset
    run_dir: str | None = None  # where checkpoints, history and the model go; None: runs/<profile>/<name>
    model: str = _prof("model")  # named size for avlib.models.create_model
    model_overrides: dict = field(default_factory=dict)  # extra CAVMAEConfig fields
    batch_size: int = _prof("batch_size")  # global batch (all ranks together)
    max_steps: int | None = None  # stop early after this many steps (the schedule still spans all epochs)
    warmup_epochs: float = 1.0
    betas: tuple[float, float] = (0.95, 0.999)  # the reference's Adam betas
    clip_grad: float | None = 1.0  # max global gradient norm (None: no clipping)
    noise: bool = True  # CAV-MAE fbank noise + time roll (every reference recipe)
    augment_video: bool = False  # random resized crop + flip (the reference has none)
    amp: bool | None = None  # bf16 autocast; None: on CUDA, and on CPUs with native bf16
    compile: bool = False  # torch.compile the model (gains nothing on CPU, see environment.md)
    num_workers: int = _prof("num_workers")  # DataLoader worker processes (also build the cache)
    cache: bool = _prof("cache")  # read the decoded-tensor cache (avlib.data.cache), built on first use
    checkpoint_every: int = 50  # steps between training-state checkpoints (0: only at the end)
    seed: int = 0
    device: str | None = None  # None: AVLIB_DEVICE, else cuda -> mps -> cpu
    resume: bool = True  # continue from <run_dir>/checkpoints/last.pt if it exists
    progress: bool = True  # tqdm bar

    def replace(self, **changes: Any):
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return to_plain(self)


@dataclass
class PretrainConfig(_Common):
    """Self-supervised CAV-MAE pretraining (the reference's recipe, cavmae-reference.md §3.1)."""

    splits: tuple[str, ...] = ("unlabeled", "train")  # datafiles to pretrain on (labels are ignored)
    epochs: int = _prof("pretrain_epochs")
    lr: float = 5e-4  # peak learning rate (after warm-up)
    min_lr: float = 1e-5  # end of the cosine
    weight_decay: float = 0.05
    mask_ratio_a: float = 0.75
    mask_ratio_v: float = 0.75
    mask_mode: str = "unstructured"  # audio: unstructured | time | freq | tf
    mae_loss_weight: float = 1.0
    contrast_loss_weight: float = _prof("contrast_loss_weight")
    bidirectional_contrast: bool = False
    contrast_center: bool = False  # subtract the batch mean of the pooled embeddings before InfoNCE (not in the
    # reference: on the course's few hundred steps the reference's InfoNCE sits at log(B) = chance, because every
    # clip's mean-pooled embedding shares one large component; centred, in-batch accuracy rises from 1/B)
    validate: bool = True  # losses on the val split (fixed masks) after every epoch
    snapshots: tuple[float, ...] = (0.5,)  # also save the model at these fractions of the run (model_step<N>/)


@dataclass
class FinetuneConfig(_Common):
    """Supervised fine-tuning of a :class:`~avlib.models.CAVMAEFT` (reference recipe, §3.2)."""

    pretrained: str | None = None  # directory written by pretrain (<run_dir>/model); None: from scratch
    mode: str = "multimodal"  # multimodal | audioonly | videoonly (training and evaluation branch)
    train_split: str = "train"
    val_split: str | None = "val"  # None: no validation
    epochs: int = _prof("finetune_epochs")
    min_steps: int = 0  # train at least this many steps (more epochs for small label fractions)
    lr: float = 2e-4  # peak lr of the encoder
    min_lr: float = 1e-6
    head_lr_mult: float = 10.0  # mlp_head learns at lr x head_lr_mult (reference: 10 - 100)
    layer_decay: float | None = None  # layer-wise lr decay (e.g. 0.75); None: off (the reference)
    weight_decay: float = 0.01
    linear_probe: bool = False  # train only mlp_head (the reference's freeze_base)
    loss: str = "ce"  # ce (single label, soft targets) | bce (multi-label)
    freqm: int = 48  # SpecAugment frequency mask (of 128 mel bins, as the reference)
    timem: int = _prof("target_length", lambda t: round(192 * t / 1024))  # reference: 192 of 1024 frames
    mixup: float = 0.5  # probability per item
    label_smoothing: float = 0.1
    label_fraction: float | None = None  # train on this share of the labelled clips (per class)
    weight_averaging: bool = True  # final weights = uniform mean of the end-of-epoch weights from wa_from on
    wa_from: float = 0.3  # first averaged epoch = floor(wa_from * epochs) + 1
    val_every: int | None = None  # epochs between validations; None: about 10 validations per run

    def __post_init__(self) -> None:
        if self.mode not in ("multimodal", "audioonly", "videoonly"):
            raise ValueError(f"mode must be multimodal, audioonly or videoonly, got {self.mode!r} (the "
                             f"missing*only modes are for testing an AV model, see avlib.evaluate).")
        if self.loss not in ("ce", "bce"):
            raise ValueError(f"loss must be 'ce' or 'bce', got {self.loss!r}.")


@dataclass
class TrainResult:
    """What a training run returns (and wrote under ``run_dir``)."""

    model: nn.Module  # the trained model (weight-averaged for fine-tuning), in eval mode, on the device
    history: list[dict]  # one row per step (+ validation rows); also history.csv / history.json
    run_dir: Path
    model_dir: Path  # save_pretrained output: model.safetensors + config.json
    config: Any
    steps: int
    wall_s: float
    final: dict = field(default_factory=dict)  # last validation metrics

    def __repr__(self) -> str:
        return (f"TrainResult(run_dir={str(self.run_dir)!r}, steps={self.steps}, wall_s={self.wall_s:.1f}, "
                f"final={ {k: round(v, 4) if isinstance(v, float) else v for k, v in self.final.items()} })")
