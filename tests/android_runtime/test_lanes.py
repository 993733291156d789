"""android_runtime.lanes: a phone's default lanes from its CPU topology (saved-style cpufreq tables)."""
from __future__ import annotations

import pytest

from android_runtime.device_info import cluster_cpus
from android_runtime.lanes import default_phone_lanes
from tests.conftest import PHONES


@pytest.mark.parametrize("phone_name,per_cluster", [("sd888", [[7], [4, 5, 6]]), ("pixel6", [[6, 7], [4, 5]])])
def test_default_lanes_come_from_the_topology_not_f0(phone_name, per_cluster):
    lanes, place = default_phone_lanes(["cpu", "gpu", "dsp"], cluster_cpus(PHONES[phone_name]))
    assert place == {"cpu": "cpu_big", "gpu": "gpu", "dsp": "dsp"}
    # fast cores = all but the little cluster = NN-Stretch's f0 on both phones; drivers on little cores
    assert (lanes["cpu_big"].CORES, lanes["cpu_big"].THREADS, lanes["cpu_big"].DELEGATE) == ([4, 5, 6, 7], 4, "xnnpack")
    assert (lanes["gpu"].CORES, lanes["gpu"].DELEGATE) == ([3], "gpu")
    assert (lanes["dsp"].CORES, lanes["dsp"].DELEGATE) == ([2], "npu")  # the DSP is LiteRT's NPU accelerator
    two, place2 = default_phone_lanes(["cpu0", "cpu1"], cluster_cpus(PHONES[phone_name]))
    assert [two[place2[p]].CORES for p in ("cpu0", "cpu1")] == per_cluster  # one cluster each, fastest first
