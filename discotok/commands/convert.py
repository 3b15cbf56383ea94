"""``discotok convert FORMAT SOURCE -o DIR``: a publisher's checkpoint -> a discotok tokenizer directory."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from discotok.commands.args import EXIT_OK, make_parser, run_command

EXIT_HELP = """exit status:
  0  the tokenizer was written
  1  error, as one line on stderr: unknown format, unreadable source, a source of another format, tensors
     that do not fit the architecture (listed)
  2  bad command-line usage
"""


def _convert_command(args: argparse.Namespace) -> int:
    from discotok.convert import convert

    tok = convert(args.format, args.source, args.output)
    depth = tok.quantizer.depth or 1
    print(f"converted {args.format} {args.source} -> {args.output}: {tok.modality.name}, "
          f"{sum(p.numel() for p in tok.parameters()) / 1e6:.2f} M parameters, {depth} level(s) of "
          f"{tok.codebook_size} codes")
    return EXIT_OK


def convert_main(argv: Sequence[str]) -> int:
    """``discotok convert FORMAT SOURCE -o DIR``; returns the exit status."""
    prog = "discotok convert"
    parser = make_parser(
        prog,
        "Convert a checkpoint in its publisher's own format into a discotok tokenizer directory\n"
        "(config.json + model.safetensors) that Tokenizer.from_pretrained and every discotok command\n"
        "load. The publisher's file is read with torch.load(weights_only=True), never executing code\n"
        "from it; loading is strict: missing, unexpected or mis-shaped tensors are listed.\n\n"
        "FORMAT: dac (a DAC .pth file: DAC.save), encodec (an EnCodec 24 kHz .th state dict), transformers\n"
        "(a transformers EncodecModel / DacModel / MimiModel / JanusVQVAE / Emu3VQVAE / ChameleonVQVAE\n"
        "directory), snac (a SNAC directory: config.json + pytorch_model.bin), mimi (moshi's Mimi\n"
        ".safetensors), titok (a TiTok / One-D-Piece hub directory), flextok (FlexTok's model.safetensors,\n"
        "its Hydra config read as data, never instantiated), llamagen (a LlamaGen VQ .pt),\n"
        "open_magvit2 (an Open-MAGVIT2 image tokenizer .ckpt), ibq (an IBQ image tokenizer .ckpt), cosmos\n"
        "(a Cosmos-Tokenizer DI folder or .jit file, read as data, never run), chameleon (Chameleon's\n"
        "tokenizer folder: vqgan.ckpt + vqgan.yaml, with the decoder), wavtokenizer (a WavTokenizer\n"
        ".ckpt, or a folder with it and its .yaml).\n"
        "SOURCE may be a hub name org/name.",
        EXIT_HELP,
    )
    parser.add_argument("format", metavar="FORMAT",
                        help="the publisher's format: dac, encodec, snac, mimi, transformers, titok, flextok, "
                             "llamagen, open_magvit2, ibq, cosmos, chameleon or wavtokenizer")
    parser.add_argument("source", metavar="SOURCE", help="the file the publisher distributes")
    parser.add_argument("-o", "--output", required=True, metavar="DIR", help="the tokenizer directory to write")
    return run_command(prog, parser, _convert_command, argv)
