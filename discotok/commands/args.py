"""What every ``discotok`` subcommand shares: argument types, the common options, one-line errors, exit statuses.

Nothing here imports torch at module level, nor may a command module: ``--help`` must answer at once; a
command imports what it runs inside its body."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from discotok.defaults import PRECISIONS

EXIT_OK, EXIT_ERROR, EXIT_SKIPPED = 0, 1, 3


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {value}")
    return value


def device_arg(text: str) -> str:
    import torch

    if text == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(text)
    except RuntimeError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError("CUDA is not available on this machine")
    return str(device)


def make_parser(prog: str, description: str, exit_help: str) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(
        prog=prog, description=description, epilog=exit_help, formatter_class=argparse.RawDescriptionHelpFormatter
    )


def add_precision(parser: argparse.ArgumentParser) -> None:
    """``--precision fp32|bf16|int8|auto`` (default fp32: bit-exact ids)."""
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32",
                        help="fp32 (default, bit-exact), bf16 (autocast; the quantizer's search stays fp32), int8 "
                             "(CPU: dynamic int8 linear layers, for ViT encoders) or auto (bf16 where it is faster: "
                             "CPUs with AMX (amx_bf16), bf16 GPUs)")


def add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch-size", type=positive_int, default=16, help="items per batch (default 16)")
    parser.add_argument("--device", type=device_arg, default="auto", help="cpu, cuda, cuda:1, ... (default: auto)")
    add_precision(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def printable(text: str) -> str:
    """``text`` itself when every character is printable, else its ``repr`` (newlines and other control
    characters escaped), so a file's name cannot forge lines of a report."""
    return text if text.isprintable() else repr(text)


def report_skipped(prog: str, skipped: Sequence[dict]) -> None:
    """One line on stderr per skipped input: its name and the reason, both escaped by ``printable``."""
    for item in skipped:
        print(f"{prog}: skipped {printable(str(item['source']))}: {printable(str(item['error']))}", file=sys.stderr)


def run_command(
    prog: str, parser: argparse.ArgumentParser, body: Callable[[argparse.Namespace], int], argv: Sequence[str]
) -> int:
    """Parse ``argv`` and run ``body``; expected failures become one line on stderr and exit 1."""
    try:
        args = parser.parse_args(list(argv))
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else EXIT_ERROR
    from discotok.tokenizers.files import TokenizerLoadError

    try:
        return body(args)
    except (TokenizerLoadError, ValueError, OSError, ImportError) as err:
        report_skipped(prog, getattr(err, "skipped", []))
        message = " ".join(str(err).split())
        print(f"{prog}: error: {message}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
