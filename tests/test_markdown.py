"""The one markdown table shape reports and benchmarks print."""

from __future__ import annotations

import pytest

from discotok.markdown import markdown_table


def test_a_table_has_a_rule_under_its_header_and_one_line_per_row():
    assert markdown_table(["a", "b"], [[1, "x"], [2.5, True]]).splitlines() == [
        "| a | b |", "|---|---|", "| 1 | x |", "| 2.5 | True |"]


def test_a_row_of_the_wrong_width_is_refused():
    with pytest.raises(ValueError, match="a row of 1 cells in a table of 2 columns"):
        markdown_table(["a", "b"], [["only"]])
