"""Branch search: space and constraints, predictor, measurement store, the loop on a synthetic
target, bad input, and (slow) a tiny end-to-end search that converts, runs and trains for real."""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pytest

from branching.search.space import (Constraints, SpaceOptions, StageContext, branch_cost, depth_grid,
                                    enumerate_candidates, valid_width, width_grid)
from branching.spec import BranchSpec
from configs import UserError
from profiling.predictor import LatencyPredictor, Sample, fit_group, holdout_errors, share_within
from profiling.store import Measurement, MeasurementStore, content_key



def _branch(width=64, depth=2, stride=2, bot_mul=1.0, group_w=0) -> BranchSpec:
    return BranchSpec("cpu0", "cpu0", depth, width, stride, bot_mul, group_w, 3, "relu")


def _ctx(block="res_basic_block", **kw) -> StageContext:
    return StageContext(1, _branch(**kw), 32, 16, block, 0.0)


# -- space and constraints ---------------------------------------------------------------------
def test_widths_keep_bottleneck_groups_whole():
    base = _branch(width=96, bot_mul=0.5, group_w=16)
    ws = width_grid(base, "res_bottleneck_block", SpaceOptions(width_steps=12))
    assert ws and all(int(round(w * 0.5)) % 16 == 0 for w in ws)
    assert not valid_width(40, base, "res_bottleneck_block")  # 20 channels do not split into groups of 16
    assert depth_grid(_branch(depth=1), SpaceOptions(depth_deltas=(-1, 0, 1))) == [1, 2]


def test_single_group_bottlenecks_stay_single_group_when_narrowed():
    from branching.search.space import branch_group_w

    resnet = _branch(width=256, bot_mul=0.25, group_w=64)  # ResNet-50 stage 1: one group of 64
    ws = width_grid(resnet, "res_bottleneck_block", SpaceOptions())
    assert len(ws) > 3 and 256 in ws
    assert branch_group_w(resnet, 192, "res_bottleneck_block") == 48
    assert _ctx("res_bottleneck_block", width=256, bot_mul=0.25, group_w=64).branch_spec("cpu1", 2, 192).group_w == 48
    regnet = _branch(width=96, bot_mul=1.0, group_w=24)  # grouped: keeps its group width
    assert branch_group_w(regnet, 48, "res_bottleneck_block") == 24


def test_every_candidate_passes_the_flops_filters():
    ctx, cons = _ctx(), Constraints()
    cands, rep = enumerate_candidates(ctx, ["cpu0", "cpu1"], SpaceOptions(width_steps=6), cons)
    ref = branch_cost(ctx, 2, 64).flops
    assert cands and rep.enumerated == rep.alpha + rep.beta + rep.max_flops + rep.remaining
    for c in cands:
        f = [b.cost.flops for b in c.branches]
        assert f[0] >= cons.alpha * ref and f[0] + f[1] >= cons.beta * ref and sum(f) <= cons.max_flops * ref
        assert [b.lane for b in c.branches] == ["cpu0", "cpu1"]


def test_flops_of_a_branch_match_the_built_module():
    from branching import complexity
    from branching.anynet import Branch

    ctx = _ctx()
    m = Branch(ctx.branch_spec("b", 2, 48), 32, "res_basic_block", 0.0)
    assert branch_cost(ctx, 2, 48).flops == complexity(m, (1, 32, 16, 16)).flops


def test_bad_constraint_values_are_named():
    assert any("gamma" in p for p in Constraints(gamma=0).check())
    assert Constraints().check() == []


# -- predictor --------------------------------------------------------------------------------
def _synthetic(n: int, group: str = "g", noise: float = 0.03, seed: int = 0) -> list[Sample]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        flops, depth = rng.uniform(2e6, 4e8), int(rng.integers(1, 4))
        acts = flops / rng.uniform(50, 200)
        lat = (40 + 8e-6 * flops + 2e-4 * acts + 15 * depth) * (1 + rng.normal(0, noise))
        out.append(Sample(group, {"flops": flops, "acts": acts, "depth": depth, "contended": False}, lat))
    return out


def test_predictor_on_synthetic_data_is_within_10_percent():
    errs = holdout_errors(_synthetic(40), folds=5)
    assert len(errs) == 40 and share_within(errs, 0.10) >= 0.9


def test_predictor_keeps_groups_apart_and_coefficients_non_negative():
    a = _synthetic(12, "a")
    b = [Sample("b", s.features, 3 * s.latency_us) for s in _synthetic(12, "b", seed=1)]
    p = LatencyPredictor().fit(a + b)
    f = a[0].features
    assert p.predict("b", f) > 2 * p.predict("a", f)
    assert all(c >= 0 for m in p.models.values() for c in m.coef)
    with pytest.raises(KeyError):
        p.predict("c", f)


def test_absolute_fit_predicts_the_mean_of_a_bimodal_cost():
    from profiling.predictor import SYNC_LADDER

    ys = [100.0] * 6 + [5000.0] * 4  # hand-overs: quick, or a whole time slice of another tenant
    samples = [Sample("s", {"out_elems": 1e5}, y) for y in ys]
    assert fit_group(samples, ladder=SYNC_LADDER, relative=False).predict({"out_elems": 1e5}) == \
        pytest.approx(np.mean(ys), rel=0.01)
    assert fit_group(samples, ladder=SYNC_LADDER).predict({"out_elems": 1e5}) < 1000  # relative fit: low mode


def test_predictor_with_one_sample_scales_with_flops():
    m = fit_group([Sample("g", {"flops": 1e8}, 1000.0)])
    assert m.predict({"flops": 5e7}) == pytest.approx(500.0, rel=1e-3)


# -- store ------------------------------------------------------------------------------------
def _row(key: str, part: str = "cpu0", us: float = 100.0) -> Measurement:
    return Measurement(key=key, kind="branch", part=part, lane="cpu0", cores=(0,), threads=1, dtype="fp32",
                       min_us=us, median_us=us * 1.1, p90_us=us * 1.2, runs=5, features={"flops": 123, "d": [1, 2]},
                       context={"note": "x, \"quoted\""}, created=time.time())


def test_store_round_trip_and_torn_last_line(tmp_path: Path):
    s = MeasurementStore(tmp_path, "host")
    k = content_key({"b": 1, "a": [2]})
    assert k == content_key({"a": [2], "b": 1})
    s.add([_row(k), _row(k, "cpu1", 90.0)])
    again = MeasurementStore(tmp_path, "host")
    assert again.get(k) == s.get(k) and len(again) == 2
    with open(again.path, "a") as f:
        f.write("deadbeef,branch,cpu0,cpu0,0,1,fp")  # a write cut short by a kill
    third = MeasurementStore(tmp_path, "host")
    assert third.skipped_lines == 1 and len(third) == 2
    third.add([_row("k2")])
    assert len(MeasurementStore(tmp_path, "host")) == 3
    assert MeasurementStore(tmp_path, "host").get(k)[0].stat("mean") == pytest.approx(110.0)  # no mean: median


def test_store_reads_files_written_before_the_mean_column(tmp_path: Path):
    from profiling.store import FIELDS

    old = [f for f in FIELDS if f != "mean_us"]
    (tmp_path / "host.csv").write_text(",".join(old) + "\nk,branch,cpu0,cpu0,0,1,fp32,1.0,2.0,3.0,5,{},{},0\n")
    (m,) = MeasurementStore(tmp_path, "host").get("k")
    assert m.mean_us is None and m.stat("mean") == 2.0


def _fake_run(calls: list):
    """StageMeasurer._run stand-in: analytic latencies, no conversion (2 lanes share the work)."""
    def run(self, key, ctx, cand):
        calls.append(cand.label)
        rows = []
        per = {b.lane: 5 + b.cost.flops / 2e5 * (1.15 if cand.branched else 1.0) for b in cand.branches}
        total = max(per.values()) + (6 if cand.branched else 4)
        for b in cand.branches:
            f = {**b.cost.__dict__, "depth": b.depth, "block_type": ctx.block_type, "contended": cand.branched}
            rows.append(Measurement(key, "branch", b.lane, b.lane, self.lanes[b.lane].cores, 1, "fp32",
                                    per[b.lane], per[b.lane], per[b.lane], 3, f, {}, time.time()))
        lane = self.merge_lane if cand.branched else cand.branches[0].lane
        rows.append(Measurement(key, "sync", "sync", lane, self.lanes[lane].cores, 1, "fp32", total - max(per.values()),
                                0, 0, 3, {"out_elems": cand.out_width, "n_branches": len(cand.branches)}, {}, 0))
        rows.append(Measurement(key, "stage", "total", "", (), 0, "fp32", total, total, total, 3, {}, {}, 0))
        return rows
    return run


def _search(store_dir: Path, cons=Constraints(), log=lambda m: None):
    from branching.search.lanes import host_lanes
    from branching.search.loop import LoopOptions, StageSearch
    from branching.search.measure import StageMeasurer

    lanes = host_lanes(["C", "C"], [0, 1])
    m = StageMeasurer(MeasurementStore(store_dir, "host"), lanes, "cpu0", "fp32", store_dir / "tflite")
    return StageSearch(m, lanes, cons, SpaceOptions(width_steps=6), LoopOptions(per_round=2, max_rounds=4), log)


def _spec(path: Path):
    from branching import spec_from_config
    from configs.loader import load_config

    return spec_from_config(load_config(path))


def test_loop_converges_measures_few_and_resumes_from_the_store(tiny_base: Path, tmp_path: Path, monkeypatch):
    from branching.search.loop import search_stages
    from branching.search.measure import StageMeasurer

    calls: list = []
    monkeypatch.setattr(StageMeasurer, "_run", _fake_run(calls))
    ss = _search(tmp_path / "store")
    res = search_stages(_spec(tiny_base), 64, ss, budget_s=60)
    first = len(calls)
    assert all(r.stop in ("converged", "no-gain", "exhausted", "rounds") for r in res)
    assert sum(len(r.evaluated) for r in res) < sum(r.ranked for r in res) or all(r.ranked <= 2 for r in res)
    assert any(r.chosen is not None for r in res)
    for r in res:
        if r.chosen:
            assert all(v < 0.8 * r.refs[l].meas.total_us for l, v in r.chosen_eval.meas.branch_us.items())
    # Same search again on the same store (or after an interruption): nothing is timed again.
    ss2 = _search(tmp_path / "store")
    res2 = search_stages(_spec(tiny_base), 64, ss2, budget_s=60)
    assert len(calls) == first and ss2.m.measured == 0 and ss2.m.reused > 0
    assert [r.chosen for r in res2] == [r.chosen for r in res]


def test_load_factor_scales_a_candidate_to_its_stage_reference_level(tmp_path: Path):
    from branching.search.loop import anchors, load_factor

    ctx = {"stage": {"stage": 1, "w_in": 32}}

    def m(key, kind, lane, us, **features):
        return Measurement(key, kind, lane, lane, (0,), 1, "fp32", us, us, us, 5, features, ctx, 0.0, us)

    store = MeasurementStore(tmp_path, "host")
    store.add([m("ref", "branch", "cpu0", 100.0, n_branches=1)])  # the unbranched stage, alone
    store.add([m("cand", "stage", "", 160.0), m("cand", "ref", "cpu0", 200.0)])  # timed while twice as loaded
    a = anchors(store, "mean", "fp32")
    assert a[(json.dumps(ctx["stage"], sort_keys=True), "cpu0")] == pytest.approx(150.0)  # median of 100, 200
    assert load_factor(store.get("cand"), a, "mean") == pytest.approx(0.75)
    assert load_factor(store.get("ref"), a, "mean") == 1.0


# -- bad input --------------------------------------------------------------------------------
def test_already_branched_base_is_refused(tiny_config: Path, tmp_path: Path):
    from branching.search import SearchOptions, search

    with pytest.raises(UserError, match="already branched"):
        search(tiny_config, tmp_path / "out", SearchOptions(train=False, store_dir=str(tmp_path / "s")))


def test_lanes_the_host_does_not_have():
    from branching.search.lanes import host_lanes, parse_lanes

    with pytest.raises(UserError, match="CPU lanes only"):
        host_lanes(parse_lanes("C,G"), [0, 1])
    with pytest.raises(UserError, match="3 CPU lanes need 3 cores"):
        host_lanes(parse_lanes("C,C,C"), [0, 1])
    with pytest.raises(UserError, match="unknown processor letters"):
        parse_lanes("C,X")
    with pytest.raises(UserError, match="at least two lanes"):
        parse_lanes("C")


def test_impossible_constraints_say_which_filter_removed_how_many(tiny_base: Path, tmp_path: Path, monkeypatch):
    from branching.search.loop import search_stages
    from branching.search.measure import StageMeasurer

    calls: list = []
    monkeypatch.setattr(StageMeasurer, "_run", _fake_run(calls))
    with pytest.raises(UserError, match=r"alpha removed \d+.*max_flops removed \d+"):
        search_stages(_spec(tiny_base), 64, _search(tmp_path, Constraints(alpha=0.9, max_flops=0.9)), 60)
    assert calls == []  # found out before measuring anything
    with pytest.raises(UserError, match=r"gamma \(predicted\) removed \d+"):
        search_stages(_spec(tiny_base), 64, _search(tmp_path, Constraints(gamma=0.05)), 60)


def test_cli_errors_exit_2_without_traceback(tiny_config: Path, tiny_base: Path, tmp_path: Path, capsys):
    from branching.search.__main__ import main

    assert main(["--base", str(tiny_config), "--out", str(tmp_path / "o"), "--store", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "already branched" in err and "Traceback" not in err
    assert main(["--base", str(tiny_base), "--out", str(tmp_path / "o"), "--store", str(tmp_path / "s"),
                 "--data-dir", str(tmp_path / "no-such-dir")]) == 2
    err = capsys.readouterr().err
    assert "data file not found" in err and "dataset-fashion-mnist" in err
    assert main(["--base", str(tiny_base), "--out", str(tmp_path / "o"), "--lanes", "C,G", "--no-train"]) == 2
    assert "CPU lanes only" in capsys.readouterr().err


def test_budget_parsing():
    from branching.search.__main__ import parse_budget

    assert parse_budget("10m") == 600 and parse_budget("90s") == 90 and parse_budget("45") == 45
    with pytest.raises(Exception):
        parse_budget("ten minutes")


def test_cli_flags_reach_the_options():
    from branching.search.__main__ import options, parse_args

    o = options(parse_args(["--base", "b.yaml", "--out", "o", "--budget", "8m", "--tol", "0.07", "--gamma", "0.7",
                            "--per-round", "4", "--epochs", "2", "--depth-deltas=-1,0,1"]))
    assert o.loop.budget_s == 480 and o.loop.tol == 0.07 and o.loop.per_round == 4
    assert o.constraints.gamma == 0.7 and o.constraints.alpha == 0.4 and o.training.epochs == 2
    assert o.space.depth_deltas == (-1, 0, 1)


# -- end to end -------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.fashion_mnist
def test_tiny_search_end_to_end(tiny_base: Path, tmp_path: Path):
    """Real conversions, real lanes, one epoch on a Fashion-MNIST subset; then run_pipeline runs the result."""
    import run_pipeline
    from branching.search.__main__ import main
    from configs.loader import load_config

    out, store = tmp_path / "out", tmp_path / "store"
    common = ["--base", str(tiny_base), "--store", str(store), "--budget", "40s", "--width-steps", "4",
              "--depth-deltas", "0", "--per-round", "2", "--max-rounds", "2", "--runs", "5", "--warmup", "1",
              "--gamma=50", "--min-gain=-50"]  # branch even where hand-overs dominate (tiny stages)
    assert main(common + ["--out", str(out), "--epochs", "1", "--train-subset", "1000", "--test-subset", "500",
                          "--verify-rounds", "1"]) == 0
    (cfg_path,) = out.glob("*.yaml")
    cfg = load_config(cfg_path, [0, 1])
    assert any(len(d) == 2 for d in cfg.ANYNET.DEPTHS) and set(cfg.DEPLOY.LANES) == {"cpu0", "cpu1"}
    rows = (out / "stage_candidates.csv").read_text().splitlines()
    assert rows[0].startswith("stage,candidate") and len(rows) > 4
    assert (out / "predicted_vs_measured.svg").read_text().startswith("<svg")
    s = json.loads((out / "summary.json").read_text())
    assert 0 <= s["accuracy"]["base_acc"] <= 1 and 0 <= s["accuracy"]["branched_acc"] <= 1
    acc = s["accuracy"]  # scored on the 500 test images asked for (1 epoch on 1000 images: near chance here)
    assert acc["test_images"] == 500 and acc["train_images"] == 1000 and acc["epochs"] == 1
    assert all(round(acc[k] * 500, 6).is_integer() for k in ("base_acc", "branched_acc"))
    assert acc["drop_points"] == pytest.approx((acc["base_acc"] - acc["branched_acc"]) * 100)
    assert Path(s["accuracy"]["branched_weights"]).is_file()
    assert s["network"]["base"]["min_us"] > 0 and s["measurements"]["timed_now"] > 0
    # Both stages are branched on the same lanes: the merge between them was timed kept and skipped, and
    # (min gain -50%: any result is accepted) skipped in the written config.
    (dec,) = s["skip_merge"]["decisions"]
    assert dec["after_stage"] == 1 and dec["merged_us"] > 0 and dec["skipped_us"] > 0 and not dec["reused"]
    assert dec["skipped"] and cfg.ANYNET.MERGES == [False, True] and s["skip_merge"]["merges"] == [False, True]
    assert 0 < dec["flops_ratio"] < 1  # stage 2's branches read one branch's output, not the concat
    # The config runs through the pipeline as is.
    assert run_pipeline.main(["--configs", str(cfg_path), "--workdir", str(tmp_path / "pipe"), "--runs", "3"]) == 0
    # A second search on the same device reuses every stored measurement.
    assert main(common + ["--out", str(tmp_path / "out2"), "--no-train", "--verify-rounds", "0"]) == 0
    s2 = json.loads((tmp_path / "out2" / "summary.json").read_text())
    assert s2["measurements"]["timed_now"] == 0 and s2["measurements"]["reused_from_store"] > 0
    assert [d["reused"] for d in s2["skip_merge"]["decisions"]] == [True]
    assert math.isfinite(s2["flops"]["ratio"])


def test_merge_candidates_need_consecutive_branched_stages_on_the_same_lanes():
    from types import SimpleNamespace as NS

    from branching.search.merges import skippable, with_merges

    def res(*lanes):
        return NS(chosen=NS(branches=[NS(lane=l) for l in lanes]) if lanes else None)

    assert skippable([res("cpu0", "cpu1"), res("cpu0", "cpu1"), res(), res("cpu0", "cpu1")]) == [0]
    assert skippable([res("cpu0", "cpu1"), res("cpu1", "cpu0")]) == []
    d = {"ANYNET": {"DEPTHS": [[1, 1], [1, 1]]}}
    assert "MERGES" not in with_merges(d, [True, True])["ANYNET"]
    assert with_merges(d, [False, True])["ANYNET"]["MERGES"] == [False, True] and "MERGES" not in d["ANYNET"]
