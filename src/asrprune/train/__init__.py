"""Training: the trainer (one loop for the teacher, L0 pruning and fine-tuning), its
settings, the default transducer loss, and the teacher's job."""

from asrprune.train.loss import LossFn, TransducerLoss
from asrprune.train.settings import TrainSettings
from asrprune.train.state import seed_everything
from asrprune.train.teacher import resolve_model_config, train_teacher
from asrprune.train.trainer import CHECKPOINT, HISTORY, Trainer, TrainResult, train

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
