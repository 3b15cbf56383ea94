"""What ``discotok eval`` writes besides ``report.json``: a markdown table, PNG plots, reconstruction
grids (images) and example wavs (audio).

Plots use matplotlib's object API (``Figure``), never pyplot, so no GUI backend is touched
(safe in notebooks and headless jobs).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from discotok import markdown
from discotok.atomic import atomic_path

COLUMNS = (
    ("tokenizer", "tokenizer", "{}"), ("codec", "codec", "{}"), ("label", "point", "{}"), ("coded_at", "coded at", "{}"),
    ("tokens_per_image", "tokens", "{}"), ("setting", "setting", "{}"),
    ("bits_per_image", "bits/img", "{:.0f}"), ("bits_per_image_with_header", "bits/img with header", "{:.0f}"),
    ("bits_per_pixel", "bpp", "{:.4f}"), ("frames_per_second", "frames/s", "{:.2f}"),
    ("bits_per_second", "bits/s", "{:.0f}"), ("bits_per_second_with_header", "bits/s with header", "{:.0f}"),
    ("psnr", "PSNR dB", "{:.2f}"),
    ("ssim", "SSIM", "{:.4f}"), ("lpips", "LPIPS", "{:.4f}"), ("rfid", "rFID", "{:.2f}"), ("pfid", "pFID", "{:.2f}"),
    ("si_snr", "SI-SNR dB", "{:.2f}"), ("mel_distance", "mel dist", "{:.3f}"), ("stft_distance", "STFT dist", "{:.3f}"),
    ("pesq", "PESQ", "{:.2f}"), ("stoi", "STOI", "{:.3f}"),
    ("codebook_usage", "usage", "{:.3f}"), ("perplexity", "perplexity", "{:.1f}"),
    ("precision", "precision", "{}"), ("ids_identical_vs_fp32", "ids = fp32", "{:.4f}"),
    ("psnr_change_vs_fp32", "ΔPSNR vs fp32", "{:+.3f}"), ("si_snr_change_vs_fp32", "ΔSI-SNR vs fp32", "{:+.3f}"),
    ("residual_left", "residual left", "{:.4f}"),
    ("encode_images_per_s", "enc img/s", "{:.1f}"), ("decode_images_per_s", "dec img/s", "{:.1f}"),
    ("encode_rtf", "enc RTF", "{:.4f}"), ("decode_rtf", "dec RTF", "{:.4f}"),
)
QUALITY = (("psnr", "PSNR (dB)"), ("ssim", "SSIM"), ("lpips", "LPIPS"), ("rfid", "rFID"), ("pfid", "pFID"))
# The rate axis and the quality panels of the rate-distortion plot, per modality.
def _save(fig: Figure, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")


def plot_rate_distortion(results: list[dict], path: Path, rate_axes: Any,
                         baselines: Sequence[dict] = ()) -> Path | None:
    """Quality against bit rate, one line per tokenizer: PSNR (and LPIPS, when measured) against bits
    per pixel for images; SI-SNR, mel and STFT distances (PESQ, STOI) against bits per second for audio.
    Classical codec rows (``baselines``, payload rate without the header) are dashed, one line per codec.
    None (no file) when no row has a quality figure (encode-only tokenizers and no baselines)."""
    rate, rate_label = rate_axes.rate, rate_axes.label
    panels = [(k, t) for k, t in rate_axes.panels if any(k in r for r in [*results, *baselines])]
    if not panels:
        return None
    fig = Figure(figsize=(5.2 * len(panels), 4))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (key, title) in zip(axes, panels):
        for name in dict.fromkeys(r["tokenizer"] for r in results):
            mine = sorted((r for r in results if r["tokenizer"] == name and key in r), key=lambda r: r[rate])
            ax.plot([r[rate] for r in mine], [r[key] for r in mine], marker="o", label=name)
        for codec in dict.fromkeys(r["codec"] for r in baselines):
            mine = sorted((r for r in baselines if r["codec"] == codec and key in r), key=lambda r: r[rate])
            ax.plot([r[rate] for r in mine], [r[key] for r in mine], marker="s", markersize=4, linestyle="--",
                    alpha=0.8, label=codec)
        ax.set_xlabel(rate_label)
        ax.set_ylabel(title)
        ax.set_xscale("log")
        ax.ticklabel_format(axis="y", useOffset=False)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("rate-distortion")
    _save(fig, path)
    return path


def plot_quality_vs_k(name: str, results: list[dict], path: Path) -> Path:
    """Each measured quality figure against the number of tokens k of a flexible tokenizer."""
    panels = [(k, t) for k, t in QUALITY if k in results[0]]
    fig = Figure(figsize=(3.6 * len(panels), 3.4))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    ks = [r["tokens_per_image"] for r in results]
    for ax, (key, title) in zip(axes, panels):
        ax.plot(ks, [r[key] for r in results], marker="o")
        ax.set_xscale("log", base=2)
        ax.ticklabel_format(axis="y", useOffset=False)
        ax.set_xlabel("tokens k")
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
    fig.suptitle(f"{name}: quality against the number of tokens", y=1.04)
    _save(fig, path)
    return path


def markdown_table(results: list[dict]) -> str:
    """The results as a markdown table; columns not measured are left out."""
    cols = [c for c in COLUMNS if any(c[0] in r for r in results)]
    cells = [[fmt.format(r[key]) if r.get(key) is not None else "-" for key, _, fmt in cols] for r in results]
    return markdown.markdown_table([c[1] for c in cols], cells)


def baselines_markdown(section: dict) -> list[str]:
    """The classical baselines of a report: where a tokenizer loses to a codec, the codecs' table,
    their lowest rates, notes and protocol, as markdown lines."""
    lines = ["## Classical codecs at the same bit rate", ""]
    losing = [f"- **{sentence}**" for sentence in section["loses_to"]]
    lines += losing or ["No tokenizer point loses to a codec that spends as few bits."]
    lines += ["", markdown_table(section["results"]), "", "Lowest rate each codec reaches on these inputs:", "",
              markdown_table(section["lowest"]), ""]
    lines += [f"- {note}" for note in section["notes"]] + ([""] if section["notes"] else [])
    lines += [f"- **{key}**: {value}" for key, value in section["protocol"].items()] + [""]
    return lines


def levels_table(results: list[dict]) -> str:
    """Residual quantizers: for each tokenizer and depth, the share of the residual each level removes
    (empty when no result has levels)."""
    rows = [r for r in results if r.get("residual_share")]
    if not rows:
        return ""
    width = max(len(r["residual_share"]) for r in rows)
    header = ["tokenizer", "point", *[f"level {j + 1}" for j in range(width)], "residual left"]
    return markdown.markdown_table(header, [
        [r["tokenizer"], r["label"], *[f"{v:.3f}" for v in r["residual_share"]],
         *["-"] * (width - len(r["residual_share"])), f"{r['residual_left']:.4f}"] for r in rows])


def write_markdown(report: dict, path: Path) -> Path:
    """``report.md``: the table, the residual levels (residual quantizers), the classical baselines, the
    protocol, skipped inputs and warnings."""
    protocol = report["protocol"]
    lines = ["# discotok eval", "", markdown_table(report["results"]), ""]
    levels = levels_table(report["results"])
    if levels:
        lines += ["## Residual levels", "",
                  "Share of the squared residual reaching each level that the level removes (code space, every "
                  "token of the set); residual left: squared error after the last level over the quantizer's input.",
                  "", levels, ""]
    lines += baselines_markdown(report["baselines"]) if "baselines" in report else []
    lines += ["## Protocol", ""]
    for key, value in protocol.items():
        if isinstance(value, dict):
            lines.append(f"- **{key}**:")
            lines += [f"  - {k}: {v}" for k, v in value.items()]
        else:
            lines.append(f"- **{key}**: {value}")
    lines += ["", f"Set fingerprint: `{report['set_fingerprint']}`", ""]
    if report["warnings"]:
        lines += ["## Warnings", ""] + [f"- {w}" for w in report["warnings"]] + [""]
    if report["skipped"]:
        lines += ["## Skipped inputs", ""] + [f"- {s['source']}: {s['error']}" for s in report["skipped"]] + [""]
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
