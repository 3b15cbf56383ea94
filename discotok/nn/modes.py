"""Run a module in eval mode for a while and give the caller's modes back afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn


@contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """Put ``module`` and all its submodules in eval mode; on exit (also after an error) restore
    each submodule's own ``training`` flag, so a caller's mixed modes come back exactly."""
    training = [m for m in module.modules() if m.training]
    if not training:  # already in eval mode throughout: nothing to switch or give back
        yield module
        return
    module.eval()
    try:
        yield module
    finally:
        for m in training:
            m.training = True
