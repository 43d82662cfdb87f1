"""The Probe base class (scikit-learn's estimator contract) and the probe registry.

A probe type is a class with ``fit(X, y)`` / ``predict(X)`` / ``score(X, y)``:
hyper-parameters in ``__init__`` (stored as given), fitted state in attributes
ending in ``_``, set by ``fit``, which returns ``self``. Register it with
``@register_probe("name")`` or through the ``mechrare.probes`` entry-point group.
Any scikit-learn classifier can be used as a probe without a wrapper.

A probe type may also fit many problems at once: ``fit_many(X, y, w=None,
class_mask=None)`` on padded ``[P, N, d]`` features returns a
:class:`~mechrare.probes.solvers.LinearModels` of P probes with the same
hyper-parameters (the built-in ``logistic`` and ``ridge`` do). The probes
analysis uses it where present and fits one by one otherwise; either way a
name means one implementation.
"""

from __future__ import annotations

from typing import Any

from sklearn.base import BaseEstimator, ClassifierMixin

from mechrare.errors import ConfigError
from mechrare.registry import Registry

PROBES: Registry[type] = Registry("probe", entry_point_group="mechrare.probes")


def register_probe(name: str):
    """Class decorator: make a probe type available as ``get_probe(name)``."""
    return PROBES.register(name)


def get_probe(name: str, **params: Any):
    """A new, unfitted probe of the registered type ``name``."""
    cls = PROBES.get(name)
    try:
        return cls(**params)
    except TypeError as exc:
        raise ConfigError(f"probe {name!r}: bad parameters {params}: {exc}") from None


def validated_probe(name: str, params: dict[str, Any], path: str = "probes"):
    """``get_probe(name, **params)``, with the parameters checked now (not at the first fit).

    Unknown parameters and values outside a scikit-learn estimator's declared
    constraints raise ConfigError naming ``<path>.params``."""
    try:
        cls = PROBES.get(name)
    except ConfigError as exc:
        raise ConfigError(f"{path}.probe: {exc}") from None
    try:
        probe = cls(**params)
    except TypeError as exc:
        valid = ", ".join(sorted(cls().get_params())) if hasattr(cls, "get_params") else "see the class"
        raise ConfigError(f"{path}.params: not parameters of probe {name!r} ({exc}); valid: {valid}") from None
    check = getattr(probe, "_validate_params", None)
    if check is not None and hasattr(probe, "_parameter_constraints"):
        try:
            check()
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{path}.params: {exc}") from None
    device = params.get("device")
    if isinstance(device, str):  # a device this machine has (e.g. no cuda on a CPU-only one)
        from mechrare.devices import resolve_device

        resolve_device(device, f"{path}.params.device")
    return probe


def probe_names() -> list[str]:
    return PROBES.names()


class Probe(ClassifierMixin, BaseEstimator):
    """Base class for probe types: a scikit-learn classifier.

    Subclasses implement ``fit`` and ``predict`` (and ``predict_proba`` where
    they can); ``score`` is mean accuracy, from ``ClassifierMixin``."""
