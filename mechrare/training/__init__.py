"""The trainer loop, its callbacks, and the checkpoint / learning-rate schedules."""

from mechrare.training.evaluate import evaluate
from mechrare.training.runner import Plan, train_run
from mechrare.training.lr import lr_factor
from mechrare.training.trainer import Callback, Trainer

__all__ = ["Callback", "Plan", "Trainer", "evaluate", "lr_factor", "train_run"]
