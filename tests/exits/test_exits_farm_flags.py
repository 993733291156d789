"""exits.search's farm flags: misuse is one line and exit code 2 (the farm runs: tests/pipeline/test_farm_searches.py)."""
from __future__ import annotations

import pytest


@pytest.mark.parametrize("argv,message", [
    (["--ray", "127.0.0.1:1"], "--ray: the exit search times on phones; pass --serial SERIAL"),
    (["--ray_phones", "soc:x"], "--ray_phones: only with --ray ADDRESS"),
])
def test_exit_search_refuses_bad_ray_flags_in_one_line(tmp_path, capsys, argv, message):
    from exits.search import main

    assert main(["--config", str(tmp_path / "none.yaml"), "--out", str(tmp_path / "o"), *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
