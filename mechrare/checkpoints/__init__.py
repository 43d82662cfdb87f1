"""The run folder format, the typed manifest, checkpoint series and metrics.nc."""

from mechrare.checkpoints.manifest import InterventionRecord, Manifest, ModelRecord, TaskRecord
from mechrare.checkpoints.metrics import build_metrics, open_dataset, write_dataset, write_metrics
from mechrare.checkpoints.run import RunFolder
from mechrare.checkpoints.schedule import checkpoint_steps
from mechrare.checkpoints.series import Checkpoint, CheckpointSeries
from mechrare.checkpoints.store import CheckpointStore

__all__ = [
    "Checkpoint",
    "CheckpointSeries",
    "CheckpointStore",
    "InterventionRecord",
    "Manifest",
    "ModelRecord",
    "RunFolder",
    "TaskRecord",
    "build_metrics",
    "checkpoint_steps",
    "open_dataset",
    "write_dataset",
    "write_metrics",
]
