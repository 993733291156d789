"""Batching patterns, expected latency, compaction and the plan format's exits (pure, no conversion)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from android_runtime.conditional import batches_of, compact, padded, softmax_confidence
from android_runtime.plan import (ExitPlan, ExitStage, LaneSpec, Plan, PlanError, Segment, TensorSpec,
                                  load_plan)
from configs.errors import ConfigError
from exits.backbone import candidate_positions, check_positions, stage_bounds
from exits.placement import Candidate, batching_pattern, choose, expected_latency, pipelined_interval


def test_batching_pattern_counts_samples_moving_on_per_batch():
    moveon = np.array([1, 0, 0, 0] * 25, bool)  # a quarter moves on
    p1 = batching_pattern(moveon, 1)
    assert p1 == pytest.approx([0.75, 0.25])
    p8 = batching_pattern(moveon, 8)
    assert p8.shape == (9,) and p8.sum() == pytest.approx(1.0)
    assert (p8 * np.arange(9)).sum() == pytest.approx(2.0, abs=0.25)  # about 8 x 1/4 per batch
    assert batching_pattern(np.zeros(16, bool), 4) == pytest.approx([1, 0, 0, 0, 0])
    with pytest.raises(ValueError, match="batch = 32"):
        batching_pattern(moveon[:10], 32)


def test_expected_latency_is_t1_plus_pattern_weighted_t2():
    t2 = np.array([0.0, 10.0, 18.0])
    assert expected_latency(5.0, t2, np.array([0.5, 0.25, 0.25])) == pytest.approx(5 + 2.5 + 4.5)
    assert pipelined_interval(5.0, t2, np.array([0.5, 0.25, 0.25])) == pytest.approx(7.0)
    with pytest.raises(ValueError, match="b = 0..B"):
        expected_latency(1.0, t2, np.array([1.0]))


def test_choose_takes_the_fastest_exit_that_beats_the_original():
    fast = Candidate(3, 0.9, 0.8, np.array([0.8, 0.2]), 4.0, np.array([0.0, 10.0]))  # 6.0
    slow = Candidate(6, 0.9, 0.9, np.array([0.9, 0.1]), 8.0, np.array([0.0, 5.0]))  # 8.5
    none = Candidate(1, None, 0.0, np.array([0.0, 1.0]), 1.0, np.array([0.0, 1.0]))
    assert choose([slow, fast, none], original_us=12.0).position == 3
    assert choose([slow, fast], original_us=5.0) is None
    assert choose([none], original_us=100.0) is None


def test_compaction_keeps_sample_order_and_values():
    feats = np.arange(5 * 2, dtype=np.float32).reshape(5, 2)
    leave = np.array([False, True, False, True, False])
    kept, index = compact(feats, np.arange(5), leave)
    assert index.tolist() == [0, 2, 4]
    assert kept.tolist() == feats[[0, 2, 4]].tolist()
    buf = padded(kept, 5)
    assert buf.shape == (5, 2) and buf[:3].tolist() == kept.tolist() and not buf[3:].any()
    assert padded(feats, 5) is feats


def test_confidence_is_the_max_softmax():
    c = softmax_confidence(np.array([[0.0, 0.0], [100.0, 0.0]], np.float32))
    assert c == pytest.approx([0.5, 1.0])


def test_candidates_every_three_blocks_and_position_checks():
    assert candidate_positions(8) == [3, 6] and candidate_positions(9) == [3, 6] and candidate_positions(3) == []
    assert stage_bounds([3, 6], 8) == [(0, 3), (3, 6), (6, 8)]
    for bad in ([8], [0], [3, 3], [6, 3], [], [True], "3"):
        with pytest.raises(ConfigError, match=r"EXITS.POSITIONS = .*1..7"):
            check_positions(bad, 8, "x.yaml")


def _plan(exits=None, version=1) -> Plan:
    seg = lambda n, i, o: Segment(n, "stage", "cpu0", "cpu", f"{n}.tflite", "0", [TensorSpec(i, [2, 4])],  # noqa: E731
                                  [TensorSpec(o, [2, 4])])
    return Plan("p", "fp32", TensorSpec("input", [2, 4]), TensorSpec("logits", [2, 4]),
                {"cpu0": LaneSpec([0], 1, "xnnpack", ["cpu"])},
                [seg("s0@2", "input", "f0"), seg("e0@2", "f0", "exit0@2"), seg("s1@2", "f0", "logits"),
                 seg("s1@1", "f0", "logits@1")], [], version=version, exits=exits)


def test_plan_version_1_still_loads_and_version_2_round_trips(tmp_path):
    old = tmp_path / "old.json"
    old.write_text(_plan().to_json())
    assert json.loads(old.read_text())["version"] == 1 and "exits" not in json.loads(old.read_text())
    assert load_plan(old).exits is None
    ex = ExitPlan(batch=2, stages=[ExitStage("cpu0", {"2": "s0@2"}, {"2": "e0@2"}, 0.9),
                                   ExitStage("cpu0", {"1": "s1@1", "2": "s1@2"})])
    new = tmp_path / "new.json"
    new.write_text(_plan(ex, 2).to_json())
    assert load_plan(new).exits == ex
    assert batches_of(np.zeros((6, 4), np.float32), load_plan(new)).shape == (3, 2, 4)
    with pytest.raises(ValueError, match="multiple of 2"):
        batches_of(np.zeros((3, 4), np.float32), load_plan(new))
    d = json.loads(new.read_text())
    d["version"] = 3
    new.write_text(json.dumps(d))
    with pytest.raises(PlanError, match="version = 3: this runner reads plan version 1 or 2"):
        load_plan(new)
    d["version"] = 2
    d["exits"]["stages"][0]["head"] = {"2": "nope"}
    new.write_text(json.dumps(d))
    with pytest.raises(PlanError, match="'nope' is not among the plan's segments"):
        load_plan(new)


def test_greedy_arithmetic_counts_each_stage_per_batch():
    from exits.greedy import batch_times, exit_stage, stage_counts

    c1 = np.array([0.99, 0.2, 0.3, 0.95])
    c2 = np.array([0.1, 0.99, 0.2, 0.1])
    stage_of = exit_stage([c1, c2], [0.9, 0.9])
    assert stage_of.tolist() == [0, 1, 2, 0]  # the first exit passed wins; sample 2 reaches the final head
    assert exit_stage([c1, c2], [None, 0.9]).tolist() == [2, 1, 2, 2]
    counts = stage_counts(stage_of, 3, batch=4)
    assert counts.tolist() == [[4, 2, 1]]  # every batch runs stage 0 on all 4; 2 reach stage 1, 1 stage 2
    times = [np.array([0, 1, 2, 3, 4.0]), np.array([0, 10, 20, 30, 40.0]), np.array([0, 100, 200, 300, 400.0])]
    assert batch_times(times, counts).mean() == pytest.approx(4 + 20 + 100)
    assert batch_times(times, np.array([[4, 2, 1], [4, 0, 0]])).tolist() == pytest.approx([124, 4])


def test_overlap_expectation_waits_for_the_head_only_when_the_batch_leaves_whole():
    from exits.greedy import overlap_batch_times
    from exits.overlap import single_overlap_batches

    parts = [(100.0, 30.0), (200.0, 0.0)]  # stage 0 body 100 + head 30, stage 1 body 200
    # batches of 2: one leaves whole (100 + 30), one keeps a sample (100 + max(200, 30))
    assert overlap_batch_times(parts, np.array([[2, 0], [2, 1]])).tolist() == pytest.approx([130, 300])
    # a head slower than the next stage is on the path of the samples that stay
    assert overlap_batch_times([(100.0, 250.0), (200.0, 0.0)], np.array([[2, 1]])).tolist() == pytest.approx([350])
    # three stages: the second head ends the batch
    three = [(100.0, 30.0), (50.0, 20.0), (80.0, 0.0)]
    assert overlap_batch_times(three, np.array([[4, 2, 0]])).tolist() == pytest.approx([100 + 50 + 20])
    # one exit candidate: t1 = body + head, t2 at b = 0..B; confidences of 4 samples, batch 1
    c = Candidate(3, 0.5, 0.5, np.array([0.5, 0.5]), t1=130.0, t2=np.array([0.0, 200.0]))
    got = single_overlap_batches(c, 100.0, np.array([0.9, 0.1, 0.8, 0.2]), 1).mean()
    assert got == pytest.approx((130 + 300) / 2)  # two leave at 130, two run on at 100 + 200
    assert c.expected_us == pytest.approx(130 + 0.5 * 200)  # PAME's plan: 230 against 215 overlapped
    assert single_overlap_batches(Candidate(3, None, 0.0, np.array([0.0, 1.0]), 130.0, np.array([0.0, 200.0])),
                                  100.0, np.zeros(4), 1) is None


def test_head_lane_must_be_another_lane_of_the_config():
    from configs.errors import UserError
    from exits.overlap import check_head_lane

    lanes = {"cpu0": LaneSpec([0], 1, "xnnpack", []), "cpu1": LaneSpec([1], 1, "xnnpack", [])}
    check_head_lane("cpu1", ["cpu0", "cpu0"], lanes)
    with pytest.raises(UserError, match=r"--head-lane = 'gpu': a lane among the config's DEPLOY.LANES"):
        check_head_lane("gpu", ["cpu0", "cpu0"], lanes)
    with pytest.raises(UserError, match=r"other than the stages' lane 'cpu0'"):
        check_head_lane("cpu0", ["cpu0", "cpu0"], lanes)
    with pytest.raises(UserError, match=r"--head-lane with --lanes cpu0,cpu1"):
        check_head_lane("cpu1", ["cpu0", "cpu1"], lanes)


def test_tail_of_a_pattern_and_of_batches():
    from exits.placement import tail

    # batch 1: 2% of batches move on past the exit (130 + 200), 98% leave at it (130)
    c = Candidate(3, 0.5, 0.98, np.array([0.98, 0.02]), t1=130.0, t2=np.array([0.0, 200.0]))
    assert c.p99_us == pytest.approx(330) and c.expected_us == pytest.approx(134)
    c_rare = Candidate(3, 0.5, 0.995, np.array([0.995, 0.005]), t1=130.0, t2=np.array([0.0, 200.0]))
    assert c_rare.p99_us == pytest.approx(130)  # fewer than 1% move on: the tail is the exit's
    assert tail(np.array([5.0, 1.0, 3.0]), np.array([0.2, 0.5, 0.3]), 0.5) == 1.0
    assert tail(np.array([5.0, 1.0, 3.0]), np.array([0.2, 0.5, 0.3]), 0.8) == 3.0
    assert tail(np.array([1.0] * 99 + [9.0])) == 1.0 and tail(np.array([1.0] * 98 + [7.0, 9.0])) == 7.0


def test_tail_limit_rules_out_a_plan_and_can_force_the_overlap_plan():
    from exits.greedy import Placement, cost_of, plan_costs
    from exits.overlap import with_overlap

    # the overlap plan expected faster, with the shorter tail
    p = Placement([3], [0.5], 160.0, [], 150.0, p99_us=330.0, overlap_p99_us=305.0)
    assert plan_costs(p, True) == {"pame": 160.0, "overlap": 150.0}
    assert plan_costs(p, True, tail_us=310.0) == {"overlap": 150.0}
    assert cost_of(False, 310.0)(p) == float("inf") and cost_of(True, 310.0)(p) == 150.0
    logs = []
    measured = {"": 130.0, "cpu1": 160.0}  # but measured slower: without a limit PAME's plan is kept
    assert with_overlap(p, "cpu1", logs.append, lambda: measured) == ("", measured)
    assert with_overlap(p, "cpu1", logs.append, lambda: measured, tail_us=310.0) == ("cpu1", measured)
    assert "over the tail limit 310" in logs[-1]
    assert with_overlap(p, "cpu1", logs.append, lambda: measured, tail_us=300.0)[0] == ""  # neither: PAME's


def test_search_refuses_a_tail_limit_below_one(tmp_path, capsys):
    from exits.search import main

    rc = main(["--config", str(tmp_path / "none.yaml"), "--out", str(tmp_path / "o"), "--max-p99", "0.9"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "--max-p99 = 0.9: 0 (no tail limit) or a ratio" in err
