"""Submodules held fixed inside a trainable component (a pretrained VAE under a tokenizer, as FlexTok trains)."""

from __future__ import annotations

from torch import nn


class FrozenParts(nn.Module):
    """A module some of whose submodules are frozen: no parameter of theirs requires a gradient (so the training
    module's optimizer leaves them out) and they stay in eval mode whatever ``train()`` is asked. Their weights stay
    in the ``state_dict`` (saved, loaded strictly)."""

    frozen: tuple[str, ...] = ()

    def freeze(self, *names: str) -> None:
        """Freeze the submodules at these attribute paths (call at the end of ``__init__``)."""
        self.frozen = (*self.frozen, *names)
        for name in names:
            self.get_submodule(name).requires_grad_(False)
        self.train(self.training)

    def train(self, mode: bool = True) -> FrozenParts:
        super().train(mode)
        for name in self.frozen:
            self.get_submodule(name).train(False)
        return self
