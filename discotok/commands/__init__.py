"""The ``discotok`` subcommands' argument parsing (``discotok.cli`` dispatches to them)."""
