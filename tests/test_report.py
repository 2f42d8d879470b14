"""Evaluation reports: per-class scores, confusion, calibration and residuals, by hand."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from polymodal.metrics import macro_f1, weighted_f1
from polymodal.report import classification_report, regression_report, write_report


def test_classification_report_hand_computed() -> None:
    # 5 examples, 3 classes; predictions 0, 0, 1, 1, 2 for targets 0, 1, 1, 1, 2
    logits = torch.log(
        torch.tensor(
            [[0.9, 0.05, 0.05], [0.6, 0.3, 0.1], [0.1, 0.8, 0.1], [0.3, 0.6, 0.1], [0.2, 0.2, 0.6]]
        )
    )
    targets = torch.tensor([0, 1, 1, 1, 2])
    r = classification_report(logits, targets, ["a", "b", "c"])
    assert r.confusion == [[1, 0, 0], [1, 2, 0], [0, 0, 1]]
    a, b, c = r.classes
    assert (a.precision, a.recall, a.support) == (0.5, 1.0, 1)
    assert (b.precision, b.recall, b.support) == (1.0, pytest.approx(2 / 3), 3)
    assert b.f1 == pytest.approx(0.8) and c.f1 == 1.0
    preds = torch.tensor([0, 0, 1, 1, 2])
    assert r.macro_f1 == pytest.approx(macro_f1(preds, targets))
    assert r.weighted_f1 == pytest.approx(weighted_f1(preds, targets))
    assert r.accuracy == pytest.approx(0.8)
    # ECE: confidences 0.9 (right), 0.6 (wrong), 0.8 (right), 0.6 (right), 0.6 (right);
    # bins (0.867, 0.933]: |1 - 0.9| * 1/5; (0.733, 0.8]: |1 - 0.8| * 1/5;
    # (0.533, 0.6]: |2/3 - 0.6| * 3/5
    expected = 0.1 / 5 + 0.2 / 5 + abs(2 / 3 - 0.6) * 3 / 5
    assert r.ece == pytest.approx(expected)
    assert sum(b["count"] for b in r.bins) == 5


def test_regression_report_hand_computed() -> None:
    r = regression_report(torch.tensor([1.0, 2.0, 4.0]), torch.tensor([1.0, 3.0, 3.0]))
    assert r.mae == pytest.approx(2 / 3) and r.rmse == pytest.approx(math.sqrt(2 / 3))
    assert r.residual_mean == pytest.approx(0.0)


def test_report_files_and_page(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    r = classification_report(logits, torch.tensor([0, 1, 1]), ["neg", "<pos>"])
    written = write_report(r, tmp_path / "rep", "run (test)", {"accuracy": 2 / 3}, html_page=True)
    assert sorted(p.name for p in written) == [
        "confusion.png",
        "reliability.png",
        "report.html",
        "report.json",
    ]
    page = (tmp_path / "rep" / "report.html").read_text()
    assert "&lt;pos&gt;" in page and "src='confusion.png'" in page  # escaped, relative links
    data = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert data["task"] == "classification" and data["confusion"] == [[1, 0], [1, 1]]
    reg = regression_report(torch.tensor([1.0, 2.0]), torch.tensor([1.5, 2.5]))
    assert [p.name for p in write_report(reg, tmp_path / "reg")] == [
        "report.json",
        "regression.png",
    ]
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file; give a folder"):
        write_report(reg, tmp_path / "file")
