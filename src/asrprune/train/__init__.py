"""Training: the trainer (one loop for the teacher, L0 pruning and fine-tuning), its
settings, the default transducer loss, and the teacher's job."""

from asrprune.train.trainer import (
    CHECKPOINT,
    HISTORY,
    LossFn,
    Trainer,
    TrainResult,
    TrainSettings,
    TransducerLoss,
    resolve_model_config,
    seed_everything,
    train,
    train_teacher,
)

__all__ = [
    "CHECKPOINT",
    "HISTORY",
    "LossFn",
    "TrainResult",
    "TrainSettings",
    "Trainer",
    "TransducerLoss",
    "resolve_model_config",
    "seed_everything",
    "train",
    "train_teacher",
]
