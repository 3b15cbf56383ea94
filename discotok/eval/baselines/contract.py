"""The small contract every classical baseline of ``discotok eval`` follows, and the runner they share.

A ``Codec`` offers operating ``points`` for the tokenizers' bit rates and ``code``s one item
(an image as uint8 (H, W, 3), a clip as float (C, T)) at a point, returning the decoded item and
the bits it spent: the payload (``bits``) and, separately, the container's header
(``header_bits``). An ``Items`` adapter (one per modality) turns eval batches into codec items and
back and says what a rate is (bits per image, bits per second). ``run_codecs`` passes the set once
and scores every codec point with eval's own metric pieces.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from discotok.eval.metrics import EvalBatch, Metric


def nearest_setting(size_of: Callable[[int], float], low: int, high: int, target: float) -> int:
    """The integer setting in ``low..high`` whose ``size_of`` is nearest ``target`` (size increasing
    with the setting, though codecs' sizes wobble by a step here and there): binary search for the
    largest setting at or under the target, then the nearest of it and its two neighbours (ties: the
    smaller size)."""
    lo, hi = low, high
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if size_of(mid) <= target:
            lo = mid
        else:
            hi = mid - 1
    candidates = [s for s in (lo - 1, lo, lo + 1) if low <= s <= high]
    return min(candidates, key=lambda s: (abs(size_of(s) - target), size_of(s)))


@dataclass(frozen=True)
class Coded:
    """One item through a codec: the decoded ``item``, payload ``bits``, the container's
    ``header_bits`` and the codec's ``setting`` (quality, bit rate) it used."""

    item: np.ndarray
    bits: float
    header_bits: float = 0.0
    setting: float | None = None


@dataclass(frozen=True)
class Point:
    """One operating point of a codec: ``target`` is the rate it aims at (bits per image or per
    second; None for a fixed-rate codec), ``settings`` what the codec needs to reach it."""

    label: str
    target: float | None = None
    settings: dict[str, Any] = field(default_factory=dict)


class Codec(Protocol):
    name: str
    title: str
    setting_name: str | None

    def points(self, targets: Sequence[float]) -> list[Point]:
        """The points to evaluate for the tokenizers' rates ``targets``."""

    def code(self, item: np.ndarray, point: Point) -> Coded:
        """``item`` through the codec at ``point``."""

    def lowest(self, item: np.ndarray) -> Coded:
        """``item`` at the fewest bits the codec can spend."""

    def describe(self) -> str:
        """The codec, its library and how a point's setting is chosen, for the report's protocol."""


class Items(Protocol):
    rate_key: str
    unit: str

    def split(self, x: Tensor, extra: dict) -> list[np.ndarray]:
        """A batch as codec items."""

    def join(self, items: list[np.ndarray], x: Tensor) -> Tensor:
        """Decoded items as a batch shaped like ``x``."""

    def size(self, item: np.ndarray) -> float:
        """What one item counts for in the rate's denominator (1 image, its seconds)."""

    def rate(self, bits: float, header_bits: float, size: float) -> dict[str, float]:
        """Rate figures of ``bits`` and ``header_bits`` spent on items of total ``size``."""


@dataclass
class _Tally:
    bits: float = 0.0
    header_bits: float = 0.0
    size: float = 0.0
    settings: list[float] = field(default_factory=list)
    item_rates: list[float] = field(default_factory=list)

    def add(self, coded: list[Coded], items: Items, originals: list[np.ndarray]) -> None:
        for c, original in zip(coded, originals, strict=True):
            size = items.size(original)
            self.bits += c.bits
            self.header_bits += c.header_bits
            self.size += size
            self.item_rates.append(c.bits / size)
            self.settings += [] if c.setting is None else [c.setting]


def _setting(codec: Codec, settings: list[float]) -> dict[str, Any]:
    if codec.setting_name is None or not settings:
        return {}
    values = np.asarray(settings, dtype=float)
    summary = {"name": codec.setting_name, "mean": float(values.mean()), "min": float(values.min()),
               "max": float(values.max())}
    text = f"{codec.setting_name} {summary['mean']:.3g}"
    return {"settings": summary, "setting": text if summary["min"] == summary["max"]
            else f"{text} ({summary['min']:.3g}..{summary['max']:.3g})"}


def run_codecs(data: Any, codecs: Sequence[Codec], targets: Sequence[float], items: Items,
               make_metrics: Callable[[], list[Metric]], progress: bool = False) -> dict[str, Any]:
    """Every codec at every point for ``targets`` over one pass of ``data`` (an ``EvalSet``).

    Returns ``results`` (one row per codec point: rate figures with and without the header, the
    codec's setting, eval's metrics), ``lowest`` (per codec: the fewest bits it can spend on these
    items) and ``notes`` (plain sentences: which targets a codec cannot reach).
    """
    jobs = [(codec, point, make_metrics(), _Tally()) for codec in codecs for point in codec.points(targets)]
    lowest = {codec.name: _Tally() for codec in codecs}
    for x, extra in tqdm(data.batches(), desc="baselines", unit="batch", disable=not progress, leave=False):
        originals = items.split(x, extra)
        for codec, point, metrics, tally in jobs:
            coded = [codec.code(item, point) for item in originals]
            batch = EvalBatch(x, items.join([c.item for c in coded], x), torch.zeros(x.shape[0], 0, dtype=torch.long),
                              extra.get("lengths"))
            for metric in metrics:
                metric.update(batch)
            tally.add(coded, items, originals)
        for codec in codecs:
            lowest[codec.name].add([codec.lowest(item) for item in originals], items, originals)
    rows, notes = [], []
    for codec, point, metrics, tally in jobs:
        row: dict[str, Any] = {"codec": codec.title, "label": point.label, f"target_{items.rate_key}": point.target,
                               **items.rate(tally.bits, tally.header_bits, tally.size), **_setting(codec, tally.settings)}
        for metric in metrics:
            row.update(metric.compute())
        floor = lowest[codec.name]
        if point.target is not None:
            short = sum(rate > point.target for rate in floor.item_rates)
            row["items_below_lowest"] = short
            if short:
                notes.append(
                    f"{codec.title} cannot go as low as {point.target:,.0f} {items.unit} on {short} of "
                    f"{len(floor.item_rates)} items: its lowest averages "
                    f"{items.rate(floor.bits, 0, floor.size)[items.rate_key]:,.0f} {items.unit} without the header "
                    f"({items.rate(floor.bits + floor.header_bits, 0, floor.size)[items.rate_key]:,.0f} with it); "
                    f"its row '{point.label}' spends {row[items.rate_key]:,.0f} {items.unit}")
        rows.append(row)
    lows = [{"codec": codec.title, **items.rate(lowest[codec.name].bits, lowest[codec.name].header_bits,
                                                lowest[codec.name].size),
             f"min_item_{items.rate_key}": min(lowest[codec.name].item_rates, default=float("nan")),
             f"max_item_{items.rate_key}": max(lowest[codec.name].item_rates, default=float("nan"))}
            for codec in codecs]
    return {"results": rows, "lowest": lows, "notes": notes}


@dataclass(frozen=True)
class Comparison:
    """How tokenizer rows and codec rows are compared: the rate both spend and one quality figure."""

    rate_key: str
    unit: str
    quality_key: str
    quality_title: str
    quality_format: str
    higher_is_better: bool

    def better(self, a: float, b: float) -> bool:
        """Whether quality ``a`` beats ``b``."""
        return a > b if self.higher_is_better else a < b

    def quality(self, value: float) -> str:
        return f"{self.quality_title} {self.quality_format.format(value)}"


def losses(results: list[dict], rows: list[dict], comparison: Comparison) -> list[str]:
    """One sentence per tokenizer row that a codec row beats on ``comparison``'s quality while spending
    no more payload bits; it names the winner that is cheapest with its header counted."""
    rate, key = comparison.rate_key, comparison.quality_key
    sentences = []
    for r in results:
        if r.get(key) is None or r.get(rate) is None:
            continue
        winners = [c for c in rows if c.get(key) is not None and c[rate] <= r[rate] and comparison.better(c[key], r[key])]
        if not winners:
            continue
        c = min(winners, key=lambda w: (w[f"{rate}_with_header"], w[rate]))
        with_header = c[f"{rate}_with_header"]
        header = f", {with_header:,.0f} with its header" if with_header != c[rate] else ""
        sentences.append(
            f"At {r[rate]:,.0f} {comparison.unit} the tokenizer {r['tokenizer']} ({r['label']}; "
            f"{comparison.quality(r[key])}) loses to {c['label']} ({c[rate]:,.0f} {comparison.unit}{header}; "
            f"{comparison.quality(c[key])}).")
    return sentences
