"""Config loading: NN-Stretch's 52 files as they are, our host configs, and bad input."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from configs import ConfigError
from configs.loader import find_configs, load_config
from conftest import REFERENCE, ROOT, TINY_BRANCHED, reference_configs

GOLDEN = json.loads((ROOT / "tests" / "golden" / "complexity.json").read_text())


def test_all_52_reference_configs_are_present():
    assert len(reference_configs()) == 52


@pytest.mark.parametrize("path", reference_configs() + sorted((ROOT / "configs" / "host").glob("*.yaml")),
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_config_loads_builds_and_matches_golden_complexity(path: Path):
    from branching import build_model, complexity, spec_from_config

    cfg = load_config(path, [0, 1])
    model = build_model(spec_from_config(cfg))
    cx = complexity(model, (1, 3, cfg.im_size, cfg.im_size))
    golden = GOLDEN[f"{path.parent.name}/{path.name}"]
    assert (cx.params, cx.flops) == (golden["params"], golden["flops"])


def test_resnet50_has_the_familiar_parameter_count():
    cfg = load_config(REFERENCE / "configs/mi/R-50-C.yaml", [0, 1])
    from branching import build_model, complexity, spec_from_config
    cx = complexity(build_model(spec_from_config(cfg)), (1, 3, 224, 224))
    assert 25.5e6 < cx.params < 25.6e6  # torchvision's resnet50: 25,557,032
    assert 4.0e9 < cx.flops < 4.2e9


def test_branch_count_follows_depths_and_devices_in_order():
    cfg = load_config(REFERENCE / "configs/mi/RX-1.6-CDG.yaml", [0, 1])
    from branching import spec_from_config
    spec = spec_from_config(cfg)
    assert list(spec.stages[0].branches) == ["cpu", "dsp"]  # 2 branches of 3 devices: the first two
    assert list(spec.stages[1].branches) == ["cpu", "dsp", "gpu"]


def test_mb_ver1_projects_each_branch_to_an_equal_share():
    cfg = load_config(REFERENCE / "configs/mi/EN-B5-CD.yaml", [0, 1])
    from branching import spec_from_config
    st = spec_from_config(cfg).stages[1]  # ORIGINAL_WIDTHS[1] = 40, two branches of 32
    assert [b.out_width for b in st.branches.values()] == [20, 20]
    assert all(b.conv_first > 0 for b in st.branches.values())


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


@pytest.mark.parametrize("old,new,key,allowed", [
    ("  STEM_W: 8\n", "  STEM_W: 8\n  COLOUR: red\n", "ANYNET.COLOUR", "unknown key"),
    ("DEPTHS: [[1], [1, 1], [1, 1]]", "DEPTHS: [[1], [1, 1, 1], [1, 1]]", "ANYNET.DEPTHS[1]", "1 to 2 entries"),
    ("WIDTHS: [[16], [16, 16], [32, 16]]", "WIDTHS: [[16], [16], [32, 16]]", "ANYNET.WIDTHS[1]", "2 entries"),
    ("WIDTHS: [[16], [16, 16], [32, 16]]", "WIDTHS: [[16], [16, -4], [32, 16]]", "ANYNET.WIDTHS[1][1]", "positive"),
    ("BLOCK_TYPE: res_bottleneck_block", "BLOCK_TYPE: transformer", "ANYNET.BLOCK_TYPE", "mbconv"),
    ("STEM_TYPE: simple_stem_in", "STEM_TYPE: fancy", "ANYNET.STEM_TYPE", "res_stem_in"),
    ("GROUP_WS: [[8], [8, 8], [8, 8]]", "GROUP_WS: [[8], [8, 7], [8, 8]]", "ANYNET.GROUP_WS[1]", "whole groups"),
    ("DEPLOY: {WARMUP: 1, RUNS: 3}", "DEPLOY: {DTYPE: int4}", "DEPLOY.DTYPE", "fp32, fp16, int8"),
    ("DEPLOY: {WARMUP: 1, RUNS: 3}", "DEPLOY: {LANES: {cpu0: {CORES: [0, 7]}}, PLACEMENT: {cpu: cpu0, gpu: cpu0}}",
     "DEPLOY.LANES.cpu0.CORES", "not available on this machine"),
    ("DEPLOY: {WARMUP: 1, RUNS: 3}", "DEPLOY: {LANES: {cpu0: {CORES: [0]}}, PLACEMENT: {cpu: cpu0}}",
     "DEPLOY.PLACEMENT.gpu", "has no lane"),
    ("MODEL: {TYPE: mbanynet, NUM_CLASSES: 10}\n", "", "MODEL", "missing section"),
])
def test_bad_input_names_file_key_value_and_what_is_allowed(tmp_path, old, new, key, allowed):
    assert old in TINY_BRANCHED
    err = _bad(tmp_path, TINY_BRANCHED.replace(old, new))
    assert err.key == key
    assert allowed in err.allowed


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
