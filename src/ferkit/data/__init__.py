"""Dataset readers (one per public layout), the in-memory dataset, folds, transforms, cache."""

from .base import FaceDataset, Reader, Record
from .folds import fold_splits, subject_folds
from .readers import READERS, ferplus_label, open_dataset

__all__ = ["FaceDataset", "Reader", "Record", "READERS", "open_dataset", "ferplus_label", "subject_folds",
           "fold_splits"]
