"""The run folder format, manifest, CheckpointStore and metrics.nc."""

from mechrare.checkpoints.metrics import build_metrics, open_dataset, write_dataset, write_metrics
from mechrare.checkpoints.run import RunFolder
from mechrare.checkpoints.store import Checkpoint, CheckpointStore

__all__ = [
    "Checkpoint",
    "CheckpointStore",
    "RunFolder",
    "build_metrics",
    "open_dataset",
    "write_dataset",
    "write_metrics",
]
