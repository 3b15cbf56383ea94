"""Small helpers for the figures runs report."""

from __future__ import annotations


def rounded(metrics: dict[str, float], name: str, digits: int) -> float:
    """``metrics["val/<name>"]`` rounded (NaN when absent)."""
    return round(float(metrics.get(f"val/{name}", float("nan"))), digits)
