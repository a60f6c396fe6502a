"""Models: CAV-MAE for pretraining (:class:`CAVMAE`) and classification (:class:`CAVMAEFT`), named configs,
checkpoints.

>>> from avlib.models import create_model
>>> model = create_model("tiny", audio_length=96, img_size=64)                # CAVMAE
>>> clf = create_model("tiny", num_classes=12, audio_length=96, img_size=64)  # CAVMAEFT
"""

from __future__ import annotations

from avlib.models.cavmae import (
    CAVMAE,
    CAVMAEFT,
    FT_MODES,
    MODE_INPUTS,
    CAVMAEEncoder,
    CAVMAEOutput,
    count_parameters,
    mode_inputs,
)
from avlib.models.config import MODEL_CONFIGS, CAVMAEConfig, get_config, model_names
from avlib.models.mae import MAE, MAEConfig, MAEOutput
from avlib.models.pretrained import from_pretrained, load_config, save_pretrained

__all__ = [
    "CAVMAEConfig", "CAVMAE", "CAVMAEFT", "CAVMAEEncoder", "CAVMAEOutput", "FT_MODES", "MODE_INPUTS", "mode_inputs",
    "MODEL_CONFIGS",
    "create_model", "get_config", "model_names", "count_parameters", "save_pretrained", "from_pretrained",
    "load_config", "MAE", "MAEConfig", "MAEOutput",
]


def create_model(name: str, *, finetune: bool | None = None, num_classes: int | None = None,
                 **overrides) -> CAVMAE | CAVMAEFT:
    """Build a named model (``tiny`` | ``small`` | ``base``) with config ``overrides``, timm-style.

    ``finetune=True`` (implied by ``num_classes``) gives a :class:`CAVMAEFT` with trainable positional
    embeddings (``tr_pos=True``, the reference's fine-tuning default, unless overridden); otherwise a
    :class:`CAVMAE`.
    """
    finetune = num_classes is not None if finetune is None else finetune
    if finetune:
        if num_classes is None:
            raise ValueError("create_model(..., finetune=True) needs num_classes.")
        overrides.setdefault("tr_pos", True)
        return CAVMAEFT(get_config(name, **overrides), num_classes=num_classes)
    if num_classes is not None:
        raise ValueError("num_classes is only for finetune=True (a CAVMAEFT classifier).")
    return CAVMAE(get_config(name, **overrides))
