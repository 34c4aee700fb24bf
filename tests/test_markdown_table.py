"""The one Markdown table builder: a cell's text never breaks the table."""

from __future__ import annotations

from sharescan.report.markdown_table import markdown_table


def test_a_table_has_a_header_a_rule_and_a_line_per_row() -> None:
    assert markdown_table(("a", "b"), [("1", "2"), ("3", "4")]) == ["| a | b |", "|---|---|", "| 1 | 2 |", "| 3 | 4 |"]


def test_a_pipe_or_newline_in_a_cell_stays_inside_its_cell() -> None:
    (_, _, row) = markdown_table(("name", "size"), [("a|b\nc", "1")])
    assert row == "| a\\|b<br>c | 1 |"
    assert row.replace("\\|", "").count("|") == 3
