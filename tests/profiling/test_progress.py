"""Progress display: a tqdm bar on a terminal, one line per step (or nothing) elsewhere."""
from __future__ import annotations

import io
import subprocess
import sys

import pytest

from tests.conftest import ROOT
from configs import UserError
from profiling.progress import ENV, Progress, progress_mode, track


class Terminal(io.StringIO):
    """A StringIO that says it is a terminal (test double: pytest captures the real stderr)."""

    def isatty(self) -> bool:
        return True


def test_lines_when_not_a_terminal_one_per_step(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    out = io.StringIO()
    with Progress("training", total=3, unit="epoch", stream=out) as bar:
        bar.step(loss=0.51234, val={"a": 0.9})
        bar.step(loss=0.4)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("training: epoch 1/3 loss=0.5123 val=a:0.9 (")
    assert lines[1].startswith("training: epoch 2/3 loss=0.4 (")


def test_quiet_off_a_terminal_for_loops_that_log_their_own_lines(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    out = io.StringIO()
    with Progress("stage 1", total=8, unit="round", lines=False, stream=out) as bar:
        bar.step(best_ms=2.3)
    assert out.getvalue() == ""


def test_a_bar_on_a_terminal(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    out = Terminal()
    assert progress_mode(out) == "bar"
    with Progress("fusion search", total=100, unit="s", lines=False, stream=out) as bar:
        bar.step(40, candidates=3)
    text = out.getvalue()
    assert "fusion search" in text and "40/100" in text and "candidates=3" in text


def test_environment_overrides_and_a_bad_value_is_named(monkeypatch):
    monkeypatch.setenv(ENV, "off")
    out = Terminal()
    with Progress("x", total=2, stream=out) as bar:
        bar.step()
    assert out.getvalue() == ""
    monkeypatch.setenv(ENV, "lines")
    assert progress_mode(Terminal()) == "lines"
    monkeypatch.setenv(ENV, "loud")
    with pytest.raises(UserError, match="NNSPLICE_PROGRESS = 'loud': one of auto, bar, lines, off"):
        progress_mode()


def test_track_counts_items(monkeypatch, capsys):
    monkeypatch.setenv(ENV, "lines")
    assert list(track(["a", "b"], "convert", unit="segment")) == ["a", "b"]
    err = capsys.readouterr().err.splitlines()
    assert [e.split(" (")[0] for e in err] == ["convert: segment 1/2", "convert: segment 2/2"]


def test_training_prints_one_line_per_epoch_through_a_pipe():
    """A real training loop in a subprocess whose stderr is a pipe (as in CI)."""
    code = """
import torch
from torch.utils.data import DataLoader, TensorDataset
from training.distill import train_classifier
torch.manual_seed(0)
x, y = torch.randn(64, 8), torch.randint(0, 3, (64,))
dl = DataLoader(TensorDataset(x, y), batch_size=16)
res = train_classifier(torch.nn.Linear(8, 3), {"train": dl, "val": dl}, epochs=3, lr=0.01)
print(res.epochs_run)
"""
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                       env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "3"
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("training:")]
    assert [ln.split(" loss=")[0] for ln in lines] == ["training: epoch 1/3", "training: epoch 2/3",
                                                       "training: epoch 3/3"]
    assert all(" val=" in ln for ln in lines)
