"""Issue 13 part 2: each bad row of a pairs CSV is one failed item naming the file and line; the rest run."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from thead.cli import app
from thead.jobs.evaluate import pairs_from_csv
from thead.jobs.pairs import read_pairs_csv

runner = CliRunner()

BAD_ROWS = 'source,driver\na.jpg,b.mp4\nshort.jpg\n,b.mp4\n"unclosed,b.mp4\nc.jpg,\x00d.mp4\nc.jpg , d.mp4\n'


def test_reenact_csv_bad_rows_are_failures(tmp_path):
    csv = tmp_path / "pairs.csv"
    csv.write_text(BAD_ROWS)
    rows, failures = read_pairs_csv(csv)
    assert rows == [(tmp_path / "a.jpg", tmp_path / "b.mp4"), (tmp_path / "c.jpg", tmp_path / "d.mp4")]
    assert [f.message.split(":")[1].strip() for f in failures] == ["line 3", "line 4", "line 5", "line 6"]
    assert all(f.failed and str(csv) in f.message for f in failures)


def test_evaluate_csv_bad_rows_are_failures(tmp_path):
    csv = tmp_path / "manifest.csv"
    csv.write_text("generated,source,driver,mode,status,message\n/x/g.mp4,/x/s.jpg,/x/d.mp4,relative,done,\n"
                   "/x/h.mp4,/x/s.jpg\n,/x/s.jpg,/x/d.mp4,relative,done,\n")
    pairs, failures = pairs_from_csv(csv)
    assert len(pairs) == 1
    assert ["line 3" in f.message for f in failures] == [True, False]
    assert "line 4" in failures[1].message
    plain = tmp_path / "plain.csv"
    plain.write_text("g.mp4,r.mp4\nonly.mp4\ng2.mp4,,s.jpg\n")
    pairs, failures = pairs_from_csv(plain)
    assert len(pairs) == 1 and ["line 2" in failures[0].message, "line 3" in failures[1].message] == [True, True]


def test_reenact_cli_runs_past_bad_rows(tmp_path):
    csv = tmp_path / "pairs.csv"
    csv.write_text(BAD_ROWS)
    res = runner.invoke(app, ["reenact", "--pairs", str(csv), "-o", str(tmp_path / "out"), "-w", str(tmp_path / "w"),
                              "--json"])
    assert res.exit_code == 1
    assert res.exception is None or isinstance(res.exception, SystemExit)
    messages = [json.loads(ln)["message"] for ln in res.stdout.splitlines() if ln.startswith("{")]
    assert sum("line " in m for m in messages) == 4
    assert any("a.jpg" in m and "file not found" in m for m in messages)
