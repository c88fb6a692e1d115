"""Training loop, evaluation, metrics, reports and plots."""

from .evaluate import evaluate, format_table
from .metrics import confusion_matrix, summarize
from .train import TrainConfig, train

__all__ = ["TrainConfig", "train", "evaluate", "format_table", "confusion_matrix", "summarize"]
