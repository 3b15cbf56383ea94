"""Every registered converter is named where users look for it: ``discotok --help``, ``discotok convert --help``
and docs/convert.md's table."""

from __future__ import annotations

from pathlib import Path

from discotok.cli import main
from discotok.convert import CONVERTERS


def test_every_format_is_listed_in_the_help_and_the_docs(capsys):
    names = CONVERTERS.names()
    assert {"dac", "encodec", "snac", "mimi", "transformers", "titok", "llamagen", "open_magvit2", "ibq",
            "cosmos"} <= set(names)
    assert main(["--help"]) == 0
    top = capsys.readouterr().out
    assert main(["convert", "--help"]) == 0
    own = capsys.readouterr().out
    table = (Path(__file__).parents[1] / "docs" / "convert.md").read_text()
    for name in names:
        assert name in top and name in own, name
        assert f"| `{name}`" in table, name
