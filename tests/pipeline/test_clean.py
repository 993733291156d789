"""pipeline.clean lists what no result row uses (dry run by default) and removes it with --delete,
never what a row's plan needs."""
from __future__ import annotations

from pathlib import Path

from pipeline import record
from pipeline.clean import main


def _work(tmp_path: Path) -> tuple[Path, Path, Path]:
    work = tmp_path / "work"
    used = work / "artifacts" / "A_fp32_111111111111"
    old = work / "artifacts" / "A_fp32_222222222222"
    for d in (used, old):
        d.mkdir(parents=True)
        (d / "plan.json").write_text("{}")
        (d / "A_fp32_model.tflite").write_bytes(b"x" * 1000)
    (work / "runs").mkdir()
    (work / "runs" / "A_fp32_host.json").write_text("{}")
    (work / "runs" / "Gone_fp32_host.json").write_text("{}")
    record.write_results(work / "result.csv", [record.ResultRow(cfg="cfgs/A.yaml", latency=1.0, name="A", status="ok",
                                                                plan=str(used / "plan.json"))])
    return work, used, old


def test_dry_run_lists_only_what_no_row_uses(tmp_path, capsys):
    work, used, old = _work(tmp_path)
    assert main(["--workdir", str(work)]) == 0
    out = capsys.readouterr().out
    assert f"unused: work {old}" in out and f"work {work / 'runs' / 'Gone_fp32_host.json'}" in out
    assert str(used) not in out and "A_fp32_host.json" not in out
    assert "2 unused" in out and "--delete removes them" in out
    assert old.is_dir()  # a dry run removes nothing


def test_delete_removes_the_unused_and_keeps_the_plans_in_use(tmp_path, capsys):
    work, used, old = _work(tmp_path)
    assert main(["--workdir", str(work), "--delete"]) == 0
    assert not old.exists() and not (work / "runs" / "Gone_fp32_host.json").exists()
    assert (used / "plan.json").is_file() and (work / "runs" / "A_fp32_host.json").is_file()
    assert main(["--workdir", str(work)]) == 0 and "0 unused" in capsys.readouterr().out


def test_a_damaged_result_file_is_refused_and_nothing_is_removed(tmp_path, capsys):
    work, used, old = _work(tmp_path)
    (work / "result.csv").write_text("not,a,result\nfile\n")
    assert main(["--workdir", str(work), "--delete"]) == 2
    assert "line 1" in capsys.readouterr().err and old.is_dir()
