import pytest

from mechrare.training import checkpoint_steps, lr_factor


def test_pythia_style_schedule():
    steps = checkpoint_steps(3000, 1000)
    assert steps == [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000, 2000, 3000]
    assert checkpoint_steps(300, 50) == [0, 1, 2, 4, 8, 16, 32, 50, 64, 100, 128, 150, 200, 250, 256, 300]
    assert checkpoint_steps(10, 4, log_spaced=False) == [0, 4, 8, 10]
    assert checkpoint_steps(5, 100) == [0, 1, 2, 4, 5]
    with pytest.raises(ValueError):
        checkpoint_steps(0, 10)


def test_warmup_then_cosine():
    f = [lr_factor(s, 100, 0.1, 0.1) for s in range(100)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert all(a <= b for a, b in zip(f[:10], f[1:10]))
    assert all(a >= b for a, b in zip(f[10:], f[11:]))
    assert f[10] == pytest.approx(1.0) and lr_factor(100, 100, 0.1, 0.1) == pytest.approx(0.1)
    assert lr_factor(0, 10, 0.0, 0.0) == pytest.approx(1.0)
