import pytest

from mechrare.checkpoints import checkpoint_steps
from mechrare.checkpoints.schedule import burst_checkpoints


def test_pythia_style_schedule():
    steps = checkpoint_steps(3000, 1000)
    assert steps == [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000, 2000, 3000]
    assert checkpoint_steps(300, 50) == [0, 1, 2, 4, 8, 16, 32, 50, 64, 100, 128, 150, 200, 250, 256, 300]
    assert checkpoint_steps(10, 4, log_spaced=False) == [0, 4, 8, 10]
    assert checkpoint_steps(5, 100) == [0, 1, 2, 4, 5]
    with pytest.raises(ValueError):
        checkpoint_steps(0, 10)


def test_burst_checkpoints_bracket_every_burst():
    assert burst_checkpoints([(50, 10, 2)], 200) == {10, 12, 60, 62, 110, 112, 160, 162}
    assert burst_checkpoints([(50, 0, 1), (100, 30, 3)], 120) == {0, 1, 50, 51, 100, 101, 30, 33}
    assert burst_checkpoints([(50, 10, 60)], 100) == {10, 60, 70, 100}  # clipped at the last step
