"""Config loading: NN-Stretch's 52 files as they are, and bad input (file, key, value, what is allowed).
Their params and FLOPs: tests/branching/test_complexity.py."""
from __future__ import annotations

from pathlib import Path

import pytest

from configs import ConfigError
from configs.loader import find_configs, load_config
from tests.conftest import REFERENCE, TINY_BRANCHED, reference_configs


@pytest.mark.reference
def test_all_52_reference_configs_are_present():
    assert len(reference_configs()) == 52


@pytest.mark.reference
def test_branch_count_follows_depths_and_devices_in_order():
    cfg = load_config(REFERENCE / "configs/mi/RX-1.6-CDG.yaml", [0, 1])
    from branching import spec_from_config
    spec = spec_from_config(cfg)
    assert list(spec.stages[0].branches) == ["cpu", "dsp"]  # 2 branches of 3 devices: the first two
    assert list(spec.stages[1].branches) == ["cpu", "dsp", "gpu"]


@pytest.mark.reference
def test_mb_ver1_projects_each_branch_to_an_equal_share():
    cfg = load_config(REFERENCE / "configs/mi/EN-B5-CD.yaml", [0, 1])
    from branching import spec_from_config
    st = spec_from_config(cfg).stages[1]  # ORIGINAL_WIDTHS[1] = 40, two branches of 32
    assert [b.out_width for b in st.branches.values()] == [20, 20]
    assert all(b.conv_first > 0 for b in st.branches.values())


@pytest.mark.reference
def test_default_host_placement_round_robins_branch_processors_over_cores():
    cfg = load_config(REFERENCE / "configs/mi/R-50-CDG.yaml", [0, 1])
    assert cfg.DEPLOY.PLACEMENT == {"cpu": "cpu0", "dsp": "cpu1", "gpu": "cpu0"}
    assert cfg.DEPLOY.LANES["cpu1"].CORES == [1]


def _bad(tmp_path: Path, text: str) -> ConfigError:
    p = tmp_path / "BAD.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError) as e:
        cfg = load_config(p, [0, 1])
        from branching import spec_from_config
        spec_from_config(cfg)
    assert str(p) in str(e.value)
    return e.value


@pytest.mark.parametrize("old,new,key,value,allowed", [
    ("  STEM_W: 8\n", "  STEM_W: 8\n  COLOUR: red\n", "ANYNET.COLOUR", "red", "unknown key; allowed: STEM_TYPE, "),
    ("DEPTHS: [[1], [1, 1], [1, 1]]", "DEPTHS: [[1], [1, 1, 1], [1, 1]]", "ANYNET.DEPTHS[1]", [1, 1, 1],
     "1 to 2 entries, one per branch (DEVICES ['cpu', 'gpu'])"),
    ("WIDTHS: [[16], [16, 16], [32, 16]]", "WIDTHS: [[16], [16], [32, 16]]", "ANYNET.WIDTHS[1]", [16],
     "2 entries, one per branch of ANYNET.DEPTHS[1]"),
    ("WIDTHS: [[16], [16, 16], [32, 16]]", "WIDTHS: [[16], [16, -4], [32, 16]]", "ANYNET.WIDTHS[1][1]", -4,
     "a positive integer"),
    ("BLOCK_TYPE: res_bottleneck_block", "BLOCK_TYPE: transformer", "ANYNET.BLOCK_TYPE", "transformer",
     "one of mbconv, res_basic_block, res_bottleneck_block"),
    ("STEM_TYPE: simple_stem_in", "STEM_TYPE: fancy", "ANYNET.STEM_TYPE", "fancy",
     "one of res_stem_cifar, res_stem_in, simple_stem_in"),
    ("GROUP_WS: [[8], [8, 8], [8, 8]]", "GROUP_WS: [[8], [8, 7], [8, 8]]", "ANYNET.GROUP_WS[1]", [8, 7],
     "splits the bottleneck width 16 (WIDTHS[1][1]=16 x BOT_MULS=1.0) into whole groups"),
    ("DEPLOY: {WARMUP: 1, RUNS: 3}", "DEPLOY: {DTYPE: int4}", "DEPLOY.DTYPE", "int4", "one of fp32, fp16, int8"),
    ("DEPLOY: {WARMUP: 1, RUNS: 3}", "DEPLOY: {LANES: {cpu0: {CORES: [0, 7]}}, PLACEMENT: {cpu: cpu0, gpu: cpu0}}",
     "DEPLOY.LANES.cpu0.CORES", [0, 7], "cores [7] are not available on this machine (available: [0, 1])"),
    ("DEPLOY: {WARMUP: 1, RUNS: 3}", "DEPLOY: {LANES: {cpu0: {CORES: [0]}}, PLACEMENT: {cpu: cpu0}}",
     "DEPLOY.PLACEMENT.gpu", None, "processor 'gpu' has no lane; lanes: cpu0"),
    ("MODEL: {TYPE: mbanynet, NUM_CLASSES: 10}\n", "", "MODEL", None,
     "missing section; NN-Stretch configs have MODEL and ANYNET"),
])
def test_bad_input_names_file_key_value_and_what_is_allowed(tmp_path, old, new, key, value, allowed):
    assert old in TINY_BRANCHED
    err = _bad(tmp_path, TINY_BRANCHED.replace(old, new))
    assert err.key == key
    assert allowed in err.allowed
    # The message a user reads: one line, "<file>: <key> = <value>: <what is allowed>".
    assert (err.file, err.value) == (str(tmp_path / "BAD.yaml"), value)
    message = str(err)
    assert message.startswith(f"{tmp_path / 'BAD.yaml'}: {key} = {value!r}: ") and "\n" not in message
    assert message.endswith(err.allowed) and allowed in message


def test_non_yaml_and_empty_folder(tmp_path):
    p = tmp_path / "x.yaml"
    p.write_text("MODEL: [unclosed\n  - : :")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(p)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match="no \\*.yaml config files"):
        find_configs(empty)
    with pytest.raises(ConfigError, match="no such file or folder"):
        find_configs(tmp_path / "missing")
