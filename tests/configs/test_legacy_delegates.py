"""hexagon/nnapi lanes: deprecated by LiteRT, refused with the remedy unless the run allows them
(--legacy_delegates or DEPLOY.LEGACY_DELEGATES), then accepted with one warning line each."""
from __future__ import annotations

import subprocess

import pytest

from configs.delegates import check_delegate
from configs.errors import ConfigError
from configs.loader import find_configs, load_config
from tests.conftest import REFERENCE, ROOT, TINY_BRANCHED, VENV_PY, reference_reason


def _config(tmp_path, delegate: str, extra: str = "") -> str:
    deploy = ("DEPLOY:\n  TARGET: adb\n  LANES:\n    cpu0: {CORES: [0], THREADS: 1, DELEGATE: xnnpack}\n"
              f"    dsp: {{CORES: [1], THREADS: 1, DELEGATE: {delegate}}}\n  PLACEMENT: {{cpu: cpu0, gpu: dsp}}\n{extra}")
    path = tmp_path / f"TINY-{delegate}.yaml"
    path.write_text(TINY_BRANCHED.replace("DEPLOY: {WARMUP: 1, RUNS: 3}\n", deploy))
    return str(path)


@pytest.mark.parametrize("delegate", ["hexagon", "nnapi"])
def test_legacy_delegate_is_refused_naming_file_key_and_npu(tmp_path, delegate):
    path = _config(tmp_path, delegate)
    with pytest.raises(ConfigError) as e:
        load_config(path)
    msg = str(e.value)
    assert msg.startswith(f"{path}: DEPLOY.LANES.dsp.DELEGATE = '{delegate}': ")
    assert "deprecated by LiteRT" in msg and "use npu" in msg and "--legacy_delegates" in msg
    assert load_config(path, legacy_delegates=True).DEPLOY.LANES["dsp"].DELEGATE == delegate
    allowed = _config(tmp_path, delegate, "  LEGACY_DELEGATES: true\n")
    assert load_config(allowed).DEPLOY.LEGACY_DELEGATES is True


def test_npu_and_cpu_are_lane_delegates_and_unknown_ones_list_them(tmp_path):
    assert load_config(_config(tmp_path, "npu")).DEPLOY.LANES["dsp"].DELEGATE == "npu"
    assert check_delegate("f", "k", "cpu", False) is None
    with pytest.raises(ConfigError, match=r"'tpu': one of xnnpack, cpu, builtin, gpu, npu \(hexagon and nnapi only"):
        load_config(_config(tmp_path, "tpu"))
    warning = check_delegate("f.yaml", "DEPLOY.LANES.dsp.DELEGATE", "hexagon", True)
    assert warning.startswith("warning: f.yaml: DEPLOY.LANES.dsp.DELEGATE = 'hexagon' is deprecated by LiteRT")
    assert "\n" not in warning


def _dry_run(cfg: str, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([VENV_PY, str(ROOT / "run_pipeline.py"), "--configs", cfg, "--dry-run", *flags],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)


def test_run_pipeline_refuses_a_hexagon_lane_unless_legacy_delegates(tmp_path):
    cfg = _config(tmp_path, "hexagon")
    refused = _dry_run(cfg)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "DEPLOY.LANES.dsp.DELEGATE = 'hexagon': hexagon is deprecated by LiteRT" in refused.stderr
    allowed = _dry_run(cfg, "--legacy_delegates")
    assert allowed.returncode == 0, allowed.stderr
    warnings = [ln for ln in allowed.stdout.splitlines() if ln.startswith("warning: ")]
    assert len(warnings) == 1 and "hexagon" in warnings[0] and "use npu" in warnings[0]
    assert "TINY-hexagon" in allowed.stdout


def test_nn_stretch_reference_configs_load_as_they_are():
    if not (REFERENCE / "configs").is_dir():
        pytest.skip(reference_reason())
    files = find_configs(REFERENCE / "configs" / "mi")
    with_d = [load_config(f) for f in files if "D" in f.stem.split("-")[-1]]
    assert with_d and all("dsp" in c.ANYNET.DEVICES for c in with_d)  # D = dsp, placed on a lane like any other
