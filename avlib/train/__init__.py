"""Training: CAV-MAE pretraining and fine-tuning as plain PyTorch loops, and label efficiency.

::

    pre = pretrain(PretrainConfig(epochs=2))                        # -> TrainResult(model, history, ...)
    ft = finetune(FinetuneConfig(pretrained=pre.model_dir, mode="multimodal"))
    table = label_efficiency(FinetuneConfig(), pretrained=pre.model_dir, fractions=(0.1, 1.0))

Both loops are the same few lines: AdamW with per-parameter-group learning rates (no weight decay on biases,
norms, tokens and positional tables), a per-step linear warm-up then cosine decay (:class:`WarmupCosine`),
gradient clipping, bf16 autocast (CUDA, and CPUs with native bf16), a ``tqdm`` bar, a metric row per step.

Differences from the reference recipes (cavmae-reference.md §3): AdamW instead of Adam + weight decay 5e-7,
a real warm-up and a cosine schedule instead of step decay, gradient clipping, optional layer-wise lr decay;
the model starts from scratch (no ImageNet weights), so the lr is higher (5e-4). Kept as defaults: the MAE loss
weight 1.0, 75 % masking, head lr multiplier, mixup, label smoothing, SpecAugment, noise augmentation, uniform
checkpoint weight averaging over the last epochs, frame aggregation. The contrastive weight is the profile's
``contrast_loss_weight`` (the reference's 0.01; ``course``: 1.0). The course's main job overrides some of these
defaults, with the measurements that chose them, in :mod:`avlib.experiments`.

Reproducibility. Batches come from :class:`~avlib.distributed.GlobalBatchSampler` (a permutation per epoch),
dataset augmentations from per-(seed, epoch, item) generators, masking noise from a per-step generator. A
checkpoint (``<run_dir>/checkpoints/last.pt``, atomic, every ``checkpoint_every`` steps) holds model,
optimizer, scheduler, RNG states, step and config, so a killed run resumed with the same config ends with the
same weights as an uninterrupted one.

Data parallel. Under ``torchrun --nproc_per_node=N`` the loops use DDP: ``batch_size`` is the global batch,
each rank loads its slice, contrastive negatives are all-gathered across ranks with gradients
(:func:`~avlib.distributed.info_nce_all_gather`), and only rank 0 writes files.

Modules: :mod:`~avlib.train.configs` (configs, result), :mod:`~avlib.train.optim` (optimiser groups, schedule,
amp), :mod:`~avlib.train.loop` (the loop skeleton both share), :mod:`~avlib.train.pretraining`,
:mod:`~avlib.train.finetuning` (+ label efficiency). The course's main job (``run_all``, the ``main_*`` helpers,
the report) lives in :mod:`avlib.experiments`; its names stay importable from here for existing code.
"""

from __future__ import annotations

import importlib
from typing import Any

from avlib.train.configs import FinetuneConfig, PretrainConfig, TrainResult
from avlib.train.finetuning import finetune, label_efficiency
from avlib.train.loop import resolve_dataset
from avlib.train.optim import WarmupCosine, layer_ids, optimizer_and_schedule, param_groups, resolve_amp
from avlib.train.pretraining import pretrain, pretrain_losses, pretrain_model, pretrain_snapshots

__all__ = ["PretrainConfig", "FinetuneConfig", "TrainResult", "WarmupCosine", "param_groups", "layer_ids",
           "optimizer_and_schedule", "resolve_amp", "resolve_dataset", "pretrain", "pretrain_model",
           "pretrain_snapshots", "pretrain_losses", "finetune", "label_efficiency",
           "main_run_dir", "main_pretrain_config", "main_finetune_config", "main_finetune_row",
           "main_label_efficiency", "run_all", "results_markdown", "FT_MODES_MAIN", "LE_FRACTIONS"]

dataset_root = resolve_dataset  # its former name (avlib.data.datafile.dataset_root is a datafile's root)

# the main job moved to avlib.experiments (above train); its public names (but its CLI `main`) resolve there on
# first use, so `from avlib.train import main_finetune_config` keeps working without train importing upwards at
# load time. New code: `from avlib.experiments import ...`.
def __getattr__(name: str) -> Any:
    if not name.startswith("_") and name != "main":
        experiments = importlib.import_module("avlib.experiments")
        if name in experiments.__all__:
            return getattr(experiments, name)
    raise AttributeError(f"module 'avlib.train' has no attribute {name!r}")
