"""Training: the shared loop, model selection and the resumable state of a run."""

from abhinaya.train.loop import Trainer, TrainingError, train

__all__ = ["Trainer", "TrainingError", "train"]
