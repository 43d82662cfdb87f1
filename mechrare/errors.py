"""Exceptions that the CLI turns into one clear line on stderr and exit code 2."""


class MechrareError(Exception):
    """Base class: a user-facing error whose message says what, where and how to fix."""


class ConfigError(MechrareError):
    """A config key is unknown, missing or holds an impossible value."""


class RunFolderError(MechrareError):
    """A run folder is missing, damaged, or holds a run with another config."""


class TrainingDiverged(MechrareError):
    """The loss or the weights became non-finite: training stops before anything non-finite is written."""


class ChecksumError(RunFolderError):
    """A checkpoint's weights do not match the sha256 recorded when it was written."""
