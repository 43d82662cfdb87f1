"""Every built-in probe passes scikit-learn's estimator checks."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from mechrare.probes import LogisticProbe, RidgeProbe

# Checks skipped, and why (also listed in docs/extending_probes.md):
EXPECTED_FAILED = {}


@parametrize_with_checks([LogisticProbe(), RidgeProbe()], expected_failed_checks=lambda est: EXPECTED_FAILED)
def test_sklearn_compatible(estimator, check):
    check(estimator)
