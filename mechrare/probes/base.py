"""The Probe base class (scikit-learn's estimator contract) and the probe registry.

A probe type is a class with ``fit(X, y)`` / ``predict(X)`` / ``score(X, y)``:
hyper-parameters in ``__init__`` (stored as given), fitted state in attributes
ending in ``_``, set by ``fit``, which returns ``self``. Register it with
``@register_probe("name")`` or through the ``mechrare.probes`` entry-point group.
Any scikit-learn classifier can be used as a probe without a wrapper.
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


def probe_names() -> list[str]:
    return PROBES.names()


class Probe(ClassifierMixin, BaseEstimator):
    """Base class for probe types: a scikit-learn classifier.

    Subclasses implement ``fit`` and ``predict`` (and ``predict_proba`` where
    they can); ``score`` is mean accuracy, from ``ClassifierMixin``."""
