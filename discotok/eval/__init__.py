"""One evaluation protocol: ``discotok eval`` / ``discotok.eval.evaluate``."""

from discotok.eval.run import EvalOptions, evaluate

__all__ = ["EvalOptions", "evaluate"]
