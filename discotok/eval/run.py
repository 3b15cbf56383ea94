"""``discotok eval``: one reproducible protocol over one or more tokenizers and one image or audio set.

The set is the first ``num_images`` inputs of a source (folder, text file of paths,
WebDataset shards; sorted as ``discotok encode`` sorts them), read once in one reference
format (``Modality.eval_reader``) with the readers ``discotok encode`` uses. Every tokenizer
sees the same inputs and is scored against the same references: one of another sample rate or
channel count codes them converted to its own format and back (``discotok.eval.formats``), an
encode-only one (a checkpoint without a decoder) gets rates, codebook use and encode speed.

Images are resized to cover ``image_size`` and centre cropped. For each tokenizer and
operating point (prefix length k of a flexible tokenizer, depth of a residual one) it
measures PSNR, SSIM, LPIPS (with local weights), rFID and optionally pFID against
InceptionV3 statistics of the originals (cached on disk under a fingerprint of the set, the
preprocessing and the network's weights), codebook usage and perplexity over the whole set,
bits per image and per pixel, and encode and decode time.

Audio clips are read at the highest sample rate and channel count among the tokenizers
(``max_seconds`` of each at most) and batched zero-padded with their lengths. For each tokenizer and depth (default
for residual quantizers: 1, 2, 4, ..., depth) it measures SI-SNR, mel and STFT distances
(PESQ and STOI with ``pesq_stoi``) over each clip's valid samples, codebook usage and
perplexity over the valid frames, bits per second, and the encode and decode real-time
factor. At each depth of a residual quantizer (audio or images) it also reports, per level, the
share of the squared residual reaching the level that it removes, and the residual left after the
last level (``residual_share``, ``residual_left``). The protocol is written into every report.

Unless ``baselines`` is off, classical codecs run at the tokenizers' own rates beside them
(``discotok.eval.baselines``: thumbnails, JPEG and WebP for images; Opus and 8-bit mu-law for
audio), scored with the same metric pieces, in the report's ``baselines`` section and plot.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm import tqdm

from discotok.atomic import atomic_path
from discotok.eval.metrics import CodebookMetric, EvalBatch, FrechetMetric, Metric, ResidualMetric
from discotok.eval.options import EvalOptions
from discotok.eval.precision import Fp32Comparison
from discotok.eval.protocol import EvalSet
from discotok.eval.report import plot_quality_vs_k, plot_rate_distortion, write_markdown
from discotok.extraction.sources import open_source
from discotok.ladder import powers_of_two
from discotok.metrics.fid import FEATURE_DIM
from discotok.nn.precision import resolve_precision
from discotok.quantizers.perturb import perturb_ids
from discotok.tokenizers.tokenizer import Tokenizer

REPORT_FORMAT = "discotok.eval"
STANDARD_FID_IMAGES = 50_000


def _ladder(tok: Tokenizer, options: EvalOptions) -> tuple[str, list[int], int] | None:
    """The encode option a tokenizer's points vary (``num_tokens`` or ``depth``), the values asked for (or its
    default ladder) and the largest it takes; None when it is evaluated as it is."""
    n = tok.encoder.sequence_length
    if n is not None and (options.num_tokens or tok.encoder.draws_prefix):
        return "num_tokens", list(options.num_tokens or powers_of_two(n)), n
    if tok.quantizer.depth is not None and (options.depths or tok.modality.depth_ladder):
        return "depth", list(options.depths or powers_of_two(tok.quantizer.depth)), tok.quantizer.depth
    return None


def operating_points(tok: Tokenizer, options: EvalOptions) -> list[dict[str, int]]:
    """Encode options to evaluate: every k of ``num_tokens`` (1-D tokenizers; default for nested-dropout encoders such as
    ``flexible``: 1, 2, 4, ..., N), every depth of ``depths`` (residual quantizers; default for modalities with a
    ``depth_ladder``, audio: 1, 2, 4, ..., depth), else the tokenizer as it is. Values past this tokenizer's N or
    depth are left out for it (tokenizers evaluated together differ; ``left_out`` says which); none left is an
    error."""
    ladder = _ladder(tok, options)
    if ladder is None:
        return [{}]
    key, values, top = ladder
    kept = [v for v in values if 1 <= v <= top]
    if not kept:
        raise ValueError(f"--{key.replace('_', '-')} {values} outside 1..{top} for this tokenizer")
    return [{key: int(v)} for v in kept]


def left_out(tok: Tokenizer, options: EvalOptions) -> str | None:
    """A sentence naming the asked-for prefix lengths or depths this tokenizer does not have, else None."""
    ladder = _ladder(tok, options)
    if ladder is None:
        return None
    key, values, top = ladder
    dropped = [v for v in values if not 1 <= v <= top]
    return f"--{key.replace('_', '-')} {dropped} left out: it takes 1..{top}" if dropped else None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], Any], device: torch.device) -> tuple[Any, float]:
    _sync(device)
    start = time.perf_counter()
    out = fn()
    _sync(device)
    return out, time.perf_counter() - start


def _label(point: dict) -> str:
    return ", ".join(f"{'k' if k == 'num_tokens' else k}={v}" for k, v in point.items()) or "full"


def encode_only_reason(tok: Tokenizer) -> str | None:
    """Why an evaluation can only encode with ``tok`` (None: it decodes too): its checkpoint has no decoder
    (``Decoder.decodes`` False), or its decoder needs a condition no evaluation set holds (``Decoder.conditioned``)."""
    if not tok.decoder.decodes:
        return "its checkpoint has no decoder"
    if tok.decoder.conditioned:
        return f"its decoder needs {tok.decoder.condition_description}, which the evaluation set does not hold"
    return None


def reconstruct(tok: Tokenizer, ids: Tensor, layout, x: Tensor, extra: dict, precision: str = "fp32") -> Tensor:
    """Decode ``ids`` like ``x``: at its size (images) or cut to its samples and masked past each length (audio)."""
    return tok.decode(ids, layout, size=x.shape[2:], lengths=extra.get("lengths"), precision=precision)


def evaluate_point(tok: Tokenizer, point: dict, data: EvalSet, metrics: list[Metric], options: EvalOptions,
                   pfid: FrechetMetric | None) -> tuple[dict, list[tuple[Tensor, Tensor]]]:
    """One pass over the set with ``tok.encode(x, **point)``; returns figures and a few (x, x_hat) examples
    (audio: each cut to its length). Each batch reaches the tokenizer in its own format and its reconstruction
    is scored in the set's (``Modality.eval_format``); an encode-only tokenizer (``encode_only_reason``) gives
    rates, codebook use and encode speed. In a precision other than fp32 every batch also runs in fp32 (untimed),
    for ``discotok.eval.precision.Fp32Comparison``'s figures."""
    device = next(tok.parameters()).device
    precision = resolve_precision(options.precision, device)
    fmt = tok.modality.eval_format(data.reader)
    decodes = encode_only_reason(tok) is None
    comparison = Fp32Comparison(metrics[0]) if precision != "fp32" and decodes else None
    generator = torch.Generator().manual_seed(options.seed)

    def decoded(ids: Tensor, layout, x_in: Tensor, extra_in: dict, x: Tensor, extra: dict) -> Tensor:
        """The fp32 reconstruction of ``ids`` in the set's format (untimed)."""
        return fmt.from_native(reconstruct(tok, ids, layout, x_in, extra_in).float().cpu(), x, extra)

    enc_s = dec_s = 0.0
    items, samples, shape, size, examples = 0, 0, None, None, []
    with torch.inference_mode():
        for x, extra in data.batches():
            x_in, extra_in = fmt.to_native(x, extra)
            (ids, layout), t = _timed(
                lambda: tok.encode(x_in.to(device), return_layout=True, precision=precision, **extra_in, **point),
                device)
            enc_s += t
            x_hat = None
            if decodes:
                x_hat, t = _timed(lambda: reconstruct(tok, ids, layout, x_in, extra_in, precision), device)
                dec_s += t
                x_hat = fmt.from_native(x_hat.float().cpu(), x, extra)
            lengths, coded = extra.get("lengths"), extra_in.get("lengths")
            frames = tok.modality.valid_frames(coded)
            latents = tok.encode_latents(x_in.to(device), **extra_in) if "depth" in point else None  # untimed
            batch = EvalBatch(x, x_hat, ids.cpu(), lengths, frames, latents)
            for metric in metrics:
                metric.update(batch)
            if comparison is not None:
                ref_ids = tok.encode(x_in.to(device), **extra_in, **point)
                ref_x_hat = decoded(ref_ids, layout, x_in, extra_in, x, extra)
                comparison.update(batch, EvalBatch(x, ref_x_hat, ref_ids.cpu(), lengths, frames))
            if pfid is not None:
                noisy = perturb_ids(tok.quantizer, ids, options.pfid_alpha, options.pfid_delta, generator)
                pfid.update(EvalBatch(x, decoded(noisy, layout, x_in, extra_in, x, extra), noisy.cpu()))
            cut = [x.shape[-1]] * x.shape[0] if lengths is None else lengths.tolist()
            if decodes:
                examples += [(a[..., :n], b[..., :n]) for a, b, n in zip(x, x_hat, cut)][: options.grid_images - len(examples)]
            items += x.shape[0]
            samples += x_in.shape[-1] * x.shape[0] if coded is None else int(coded.sum())
            shape, size = tuple(ids.shape[1:]), tuple(x_in.shape[2:])
    if items == 0:
        raise ValueError(f"none of the evaluation {tok.modality.items_noun} could be read")
    label = _label(point) + ("" if decodes else " (encode only)")
    figures: dict[str, Any] = {"point": point, "label": label, "precision": precision,
                               **tok.modality.rate_figures(shape, size)}
    if fmt.coded_at is not None:
        figures["coded_at"] = fmt.coded_at
    for metric in [*metrics, *([pfid] if pfid else [])]:
        figures.update(metric.compute())
    if comparison is not None:
        figures.update(comparison.compute(figures))
    figures.update(tok.modality.timing_figures(items, samples, enc_s, dec_s if decodes else None))
    return figures, examples


def _names(paths: list[str | None]) -> list[str]:
    names, seen = [], {}
    for i, path in enumerate(paths):
        base = Path(path).name if path else f"tokenizer{i}"
        seen[base] = seen.get(base, 0) + 1
        names.append(base if seen[base] == 1 else f"{base}_{seen[base]}")
    return names


def _metrics(tok: Tokenizer, point: dict, opts: EvalOptions, nets: dict,
             reader: Any = None) -> tuple[list[Metric], FrechetMetric | None]:
    """The metric pieces of one operating point on ``reader``'s reference format (None: the tokenizer's own): the
    modality's, then codebook use, and pFID's (images, when asked for); the first piece is the headline quality
    (PSNR, SI-SNR) that ``Fp32Comparison`` repeats in fp32; a point at a residual depth also reports the share of
    the residual each level removes. An encode-only tokenizer gets no quality pieces."""
    decodes = encode_only_reason(tok) is None
    quality, pfid = tok.modality.eval_metrics(reader, opts, nets) if decodes else ([], None)
    levels: list[Metric] = [ResidualMetric(tok.quantizer)] if "depth" in point else []
    return [*quality, CodebookMetric(tok.codebook_size), *levels], pfid


def headline_metric(tok: Tokenizer) -> Metric:
    """A fresh piece for the tokenizer's headline quality: PSNR for images, SI-SNR for audio."""
    return _metrics(tok, {}, EvalOptions(), {"lpips": None, "fid": None})[0][0]


def _check_comparable(toks: list[Tokenizer]) -> None:
    """One modality per evaluation (its reader resamples or notes what else differs between the tokenizers)."""
    names = sorted({t.modality.name for t in toks})
    if len(names) > 1:
        raise ValueError(f"tokenizers evaluated together must share one modality, got {names} "
                         "(evaluate them separately: one data set, one protocol)")


def evaluate(
    tokenizers: Sequence[Tokenizer | str | os.PathLike],
    data: str | os.PathLike | Sequence[str | os.PathLike],
    output_dir: str | os.PathLike,
    **options: Any,
) -> dict:
    """Evaluate ``tokenizers`` on ``data``; write ``report.json``, ``report.md`` and PNG plots to ``output_dir``
    (and, for audio, example wavs under ``examples_NAME/``).

    ``options`` are the fields of ``EvalOptions``. Returns the report (also the JSON's content).
    """
    opts = EvalOptions(**options)
    device = torch.device(opts.device)
    paths = [None if isinstance(t, Tokenizer) else str(Path(t).resolve()) for t in tokenizers]
    toks = [t.to(device).eval() if isinstance(t, Tokenizer) else Tokenizer.from_pretrained(t, device=device)
            for t in tokenizers]
    if not toks:
        raise ValueError("give at least one tokenizer")
    _check_comparable(toks)
    if opts.num_tokens and all(t.encoder.sequence_length is None for t in toks):
        raise ValueError("--num-tokens selects prefixes of 1-D tokenizers; none of these has a prefix of tokens")
    names = _names(paths)
    modality = toks[0].modality
    reader = modality.eval_reader([t.modality for t in toks], opts.image_size, opts.max_seconds)
    source = open_source(data, extensions=reader.tar_extensions, member=reader.tar_member)
    data_set = EvalSet(source, reader, opts.batch_size, opts.workers, opts.num_images)
    protocol, nets = modality.eval_protocol(reader, data_set, opts, device)
    warns: list[str] = []
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {"json": "report.json", "markdown": "report.md", "rate_distortion": "rate_distortion.png"}
    results = []
    bar = tqdm(total=sum(len(operating_points(t, opts)) for t in toks), desc="eval", unit="point",
               file=sys.stderr, disable=not opts.progress)
    with bar:
        for name, path, tok in zip(names, paths, toks):
            rows, labels = [], []
            if left_out(tok, opts):
                warns.append(f"{name}: {left_out(tok, opts)}")
            reason = encode_only_reason(tok)
            if tok.decoder.conditioned:  # a checkpoint without a decoder is encode-only by nature; this one is not
                warns.append(f"{name}: encoded only, not decoded: {reason}")
            for point in operating_points(tok, opts):
                metrics, pfid = _metrics(tok, point, opts, nets, reader)
                figures, examples = evaluate_point(tok, point, data_set, metrics, opts, pfid)
                results.append({"tokenizer": name, "path": path, **figures})
                rows.append(examples)
                labels.append(figures["label"])
                bar.update(1)
            if reason is None:
                key, file = modality.save_eval_examples(reader, rows, labels, out, name)
                files[key] = file
    protocol |= {f"num_{modality.items_noun}": data_set.num_used, **reader.summarize(data_set.infos)}
    coding = {name: tok.modality.eval_format(reader).note for name, tok in zip(names, toks)}
    coding |= {name: f"encodes only ({encode_only_reason(tok)}): rates, codebook use and encode speed, no quality "
                     "figures" for name, tok in zip(names, toks) if encode_only_reason(tok) is not None}
    if any(coding.values()):
        protocol["coding"] = {name: note for name, note in coding.items() if note}
    if nets.get("fid") is not None and data_set.num_used < FEATURE_DIM:
        warns.append(
            f"rFID over {data_set.num_used} images: fewer than the {FEATURE_DIM} feature dimensions, so the covariance is "
            f"rank-deficient and the figure is biased; it compares only with runs over this same set "
            f"(the standard protocol uses {STANDARD_FID_IMAGES:,} images)"
        )
    for key, why in (("pesq", "under 0.25 s or no speech detected"), ("stoi", "under 30 frames of speech")):
        unscored = [f"{r['tokenizer']} {r['label']}: {r[key + '_unscored']}" for r in results if r.get(key + "_unscored")]
        if unscored:
            warns.append(f"{key.upper()} could not score every clip ({why}); its mean is over the others. "
                         f"Clips left out: {', '.join(unscored)}")
    for message in warns:
        warnings.warn(message, stacklevel=2)
    report = {
        "format": REPORT_FORMAT, "version": 1, "protocol": protocol, "source": data_set.source.description,
        "set_fingerprint": data_set.source.fingerprint(), "results": results, "skipped": data_set.skipped,
        "warnings": warns, "options": {k: v for k, v in asdict(opts).items() if k not in ("progress",)},
        "environment": {"torch": torch.__version__, "device": str(device), "threads": torch.get_num_threads(),
                        "machine": platform.machine(), "processor": platform.processor() or platform.machine()},
        "files": files,
    }
    if opts.baselines:
        report["baselines"] = modality.eval_baselines(data_set, results, opts, nets)
    if plot_rate_distortion(results, out / "rate_distortion.png", modality.rate_axes,
                            report.get("baselines", {}).get("results", [])) is None:
        del files["rate_distortion"]
    for name in names:
        mine = [r for r in results if r["tokenizer"] == name]
        if len(mine) > 1 and "num_tokens" in mine[0]["point"]:
            plot_quality_vs_k(name, mine, out / f"quality_vs_k_{name}.png")
            report["files"][f"quality_vs_k_{name}"] = f"quality_vs_k_{name}.png"
    with atomic_path(out / "report.json") as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    write_markdown(report, out / "report.md")
    return report
