"""converter.build's content-hash cache: what changes the .tflite bytes misses (placement, dtype; weights:
tests/converter/test_convert.py), what does not hits and only rewrites plan.json (lane threads and
cores), and damaged artifacts are converted again.

A one-stage network (one segment) keeps each conversion short; every test works in its own workdir
seeded with a copy of the session's fp32 artifacts, so nothing it rewrites is shared.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from android_runtime.plan import load_plan
from tests.conftest import one_stage_config

pytestmark = pytest.mark.slow


def _convert(cfg_path: Path, workdir: Path):
    from branching.segments import build_config
    from configs.loader import load_config
    from converter.build import convert

    built = build_config(load_config(cfg_path, [0, 1]))
    return built, convert(built, workdir)


@pytest.fixture
def cached(conversion_workdir, tmp_path):
    """(config folder, workdir holding only ONE-res_basic_block fp32's artifacts, its Converted)."""
    _, conv = _convert(one_stage_config(conversion_workdir.parent / "one_stage"), conversion_workdir)
    work = tmp_path / "work"
    shutil.copytree(conv.plan_dir, work / "artifacts" / conv.plan_dir.name)
    folder = tmp_path / "cfg"
    _, again = _convert(one_stage_config(folder), work)
    assert again.cache_hit and again.plan_dir == work / "artifacts" / conv.plan_dir.name
    return folder, work, again


def test_only_threads_and_cores_changed_hits_and_rewrites_the_plans_lanes(cached):
    folder, work, conv = cached
    before = {s.file: (conv.plan_dir / s.file).stat().st_mtime_ns for s in conv.plan.segments}
    core = 1 % (os.cpu_count() or 1)
    _, hit = _convert(one_stage_config(folder, threads=2, core0=core), work)
    assert hit.cache_hit and hit.plan_path == conv.plan_path
    assert {s.file: (conv.plan_dir / s.file).stat().st_mtime_ns for s in hit.plan.segments} == before  # not rewritten
    lanes = load_plan(hit.plan_path).lanes  # what the runner reads
    assert (lanes["cpu0"].threads, lanes["cpu0"].cores) == (2, [core])
    assert (conv.plan.lanes["cpu0"].threads, conv.plan.lanes["cpu0"].cores) == (1, [0])


@pytest.mark.parametrize("change", ["placement", "dtype"])
def test_a_changed_placement_or_dtype_misses(cached, change):
    folder, work, conv = cached
    edit = {"placement": dict(lane="cpu1"), "dtype": dict(dtype="fp16")}[change]
    _, miss = _convert(one_stage_config(folder, **edit), work)
    assert not miss.cache_hit and miss.plan_dir != conv.plan_dir
    assert miss.plan.source["cache_key"] != conv.plan.source["cache_key"]
    if change == "placement":  # same bytes would run on another lane: the segment is named by it
        assert [s.lane for s in miss.plan.segments] == ["cpu1"] and miss.plan.dtype == "fp32"
    else:
        assert [s.lane for s in miss.plan.segments] == ["cpu0"] and miss.plan.dtype == "fp16"
    assert sorted(p.name for p in (work / "artifacts").iterdir()) == sorted([conv.plan_dir.name, miss.plan_dir.name])


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete"])
def test_a_damaged_segment_is_converted_again(cached, damage):
    from converter.build import sha256_file
    from converter.verify import verify

    folder, work, conv = cached
    (seg,) = conv.plan.segments
    f = conv.plan_dir / seg.file
    data = f.read_bytes()
    if damage == "delete":
        f.unlink()
    else:
        f.write_bytes(data[:100] + b"\xff" * 8 + data[108:] if damage == "flip" else data[: len(data) // 2])
    built, again = _convert(one_stage_config(folder), work)
    assert not again.cache_hit and again.plan_path == conv.plan_path  # same key, same folder, new bytes
    assert sha256_file(f) == again.plan.segments[0].sha256 == load_plan(again.plan_path).segments[0].sha256
    assert verify(again, built).max_abs_diff < 1e-5
