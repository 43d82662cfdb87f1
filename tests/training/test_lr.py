import pytest

from mechrare.training import lr_factor


def test_warmup_then_cosine():
    f = [lr_factor(s, 100, 0.1, 0.1) for s in range(100)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert all(a <= b for a, b in zip(f[:10], f[1:10]))
    assert all(a >= b for a, b in zip(f[10:], f[11:]))
    assert f[10] == pytest.approx(1.0) and lr_factor(100, 100, 0.1, 0.1) == pytest.approx(0.1)
    assert lr_factor(0, 10, 0.0, 0.0) == pytest.approx(1.0)
