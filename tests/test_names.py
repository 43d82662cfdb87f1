"""Names that become folder names: one strict pattern, from config and manifest alike."""

import pytest

from mechrare.cli import main
from mechrare.names import is_safe_name


@pytest.mark.parametrize("name", ["d16-l2", "d16-l2-up0.3", "mine", "A_b+c.1"])
def test_plain_names_pass(name):
    assert is_safe_name(name)


@pytest.mark.parametrize("name", ["", ".", "..", ".hidden", "../x", "a/b", "a\\b", "a b", "ü", "x" * 129, None, 3])
def test_names_that_could_leave_a_folder_fail(name):
    assert not is_safe_name(name)


@pytest.mark.parametrize("name", ["..", "../../elsewhere", "a b"])
def test_a_config_model_name_that_is_not_a_folder_name_is_one_line_exit_2(tmp_path, capsys, name):
    out = tmp_path / "run"
    code = main(["train", "tiny", "--out", str(out), "--set",
                 f'ladder.models=[{{ name = "{name}", d_model = 8, n_layers = 1, n_heads = 1 }}]', "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "must be letters, digits" in err
    assert not out.exists()  # nothing written
