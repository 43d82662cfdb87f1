"""Probes: the Probe base, the registry, built-in linear probes with batched fits, control tasks."""

from mechrare.probes import linear as _linear  # noqa: F401  (registers the built-ins)
from mechrare.probes.base import PROBES, Probe, get_probe, probe_names, register_probe, validated_probe
from mechrare.probes.control import control_labels
from mechrare.probes.linear import LogisticProbe, RidgeProbe
from mechrare.probes.solvers import LinearModels, fit_logistic_many, fit_ridge_many

__all__ = [
    "PROBES",
    "LinearModels",
    "LogisticProbe",
    "Probe",
    "RidgeProbe",
    "control_labels",
    "fit_logistic_many",
    "fit_ridge_many",
    "get_probe",
    "probe_names",
    "register_probe",
    "validated_probe",
]
