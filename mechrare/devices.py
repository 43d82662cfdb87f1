"""Devices, autocast and CPU threads: the ground floor every layer may use.

Errors name the setting that asked for the device (``train.device``,
``probes.device``, ...), so a message always points at the key to change.
"""

from __future__ import annotations

from contextlib import contextmanager

from mechrare.errors import ConfigError


def resolve_device(name: str, key: str = "device"):
    """``auto`` -> cuda if available, else cpu; ``cuda`` / ``cuda:N`` only where torch sees CUDA.

    ``key`` is the setting's path, used in the error message."""
    import torch

    if not isinstance(name, str) or name.split(":")[0] not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"{key}: must be auto, cpu, cuda or cuda:N, got {name!r}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"{key}: {name!r} asked for, but torch sees no CUDA device; use auto or cpu")
    try:
        return torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"{key}: {name!r} is not a device ({exc})") from None


def autocast_dtype(precision: str, device):
    """bf16 where asked for, or under ``auto`` on CUDA; None (no autocast) otherwise."""
    import torch

    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


@contextmanager
def torch_threads(n: int):
    """Run the block with ``n`` torch CPU threads (0: leave torch's setting), then restore it."""
    import torch

    before = torch.get_num_threads()
    if n > 0:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
