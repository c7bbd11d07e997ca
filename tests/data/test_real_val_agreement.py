"""benchmarks/real_val_agreement.py: ranks with ties, Spearman's rho with its exact permutation p-value, and the
refusal to compare two evaluations made at different bundle versions (different thresholds)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import load_benchmark

rva = load_benchmark("real_val_agreement")


def test_ranks_average_ties():
    assert rva.ranks(np.array([0.3, 0.1, 0.3, 0.2])).tolist() == [3.5, 1.0, 3.5, 2.0]


def test_spearman_exact_p():
    a = np.array([1.0, 2.0, 3.0, 4.0])
    rho, p = rva.spearman(a, a * 10)
    assert rho == pytest.approx(1.0)
    assert p == pytest.approx(2 / 24)  # the identity and the reversal are as extreme, of 4! orderings
    rho, _ = rva.spearman(a, -a)
    assert rho == pytest.approx(-1.0)


def _summary(folder: Path, version: str, pos_key: str, speech_group: str, frr: float, fas: int) -> Path:
    folder.mkdir(parents=True)
    doc = {
        "model": {"version": version},
        "sets": {pos_key: {"at_bundle_thresholds": {"frr": frr, "detected": 1, "clips": 2}}},
        "negatives": {"at_bundle_thresholds": {"per_source": [
            {"group": speech_group, "hours": 0.5, "false_accepts": fas},
            {"group": "generated/speech", "hours": 9.0, "false_accepts": 100},  # not real speech: not counted
        ]}},
    }  # fmt: skip
    (folder / "summary.json").write_text(json.dumps(doc))
    return folder


def test_figures_and_version_check(tmp_path, capsys):
    val = _summary(tmp_path / "v", "1", "data/real_val/positives", "data/real_val/negatives/speech", 0.25, 2)
    rep = _summary(tmp_path / "r", "1", "data/real/positives", "data/real/negatives/speech", 0.5, 5)
    assert rva.figures(val, "val")["fa_per_hour"] == pytest.approx(4.0)
    assert rva.figures(rep, "report")["frr"] == 0.5
    other = _summary(tmp_path / "r2", "2", "data/real/positives", "data/real/negatives/speech", 0.5, 5)
    out = tmp_path / "agreement.json"
    assert rva.main(["--pair", "a", str(val), str(other), "--out", str(out)]) == 2
    assert "different bundle versions" in capsys.readouterr().err
    assert not out.exists()


def test_a_folder_without_its_summary_is_one_line_error(tmp_path, capsys):
    val = _summary(tmp_path / "v", "1", "data/real_val/positives", "data/real_val/negatives/speech", 0.25, 2)
    assert rva.main(["--pair", "a", str(val), str(tmp_path / "missing"), "--out", str(tmp_path / "o.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: a: not an evaluation") and err.count("\n") == 1
    # a validation folder given where the report folder belongs: its sets are not the report set's
    assert rva.main(["--pair", "a", str(val), str(val), "--out", str(tmp_path / "o.json")]) == 2
    assert "KeyError" in capsys.readouterr().err
