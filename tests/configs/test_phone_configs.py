"""The ready configs for real phones (configs/sd888, configs/pixel6): each processor on the right
cores and delegate of that phone (saved-style cpufreq topologies in conftest.PHONES)."""
from __future__ import annotations

import pytest

from android_runtime.benchmark_model import core_mask
from android_runtime.device_info import cluster_cpus
from configs.loader import find_configs, load_config
from tests.conftest import PHONES, ROOT


@pytest.mark.parametrize("phone_name", sorted(PHONES))
def test_phone_configs_map_processors_to_lanes_on_that_phone(phone_name):
    topo = cluster_cpus(PHONES[phone_name]).core_masks()
    files = find_configs(ROOT / "configs" / phone_name)
    assert len(files) >= 4 and any(f.stem == "R-50-CG" for f in files)
    for f in files:
        cfg = load_config(f)
        d = cfg.DEPLOY
        assert d.TARGET == "adb"
        lanes = {proc: d.LANES[lane] for proc, lane in d.PLACEMENT.items()}
        cpu = lanes["cpu"] if "cpu" in lanes else None
        if cpu is not None:  # the CPU branch owns the fast cores (NN-Stretch's f0 on the SD888)
            mask = int(core_mask(cpu.CORES), 16)
            assert mask & topo["big"] == topo["big"] and mask & topo["little"] == 0, f
            assert cpu.DELEGATE == "xnnpack" and cpu.THREADS == len(cpu.CORES)
        for proc, delegate in (("gpu", "gpu"), ("dsp", "npu")):  # NN-Stretch's DSP is LiteRT's NPU lane
            if proc in lanes:
                assert lanes[proc].DELEGATE == delegate, f
                assert not set(lanes[proc].CORES) & set(cpu.CORES if cpu else []), f  # no stolen big cores
        assert d.DTYPE == ("int8" if "dsp" in lanes else "fp32"), f
        assert all(set(l.CORES) <= set(range(8)) for l in d.LANES.values())
