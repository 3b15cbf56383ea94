"""Lightning checkpoints of taming-style training code (Open-MAGVIT2, IBQ): the state dict, and which weights to use.

Such a checkpoint is ``{"state_dict": ..., "epoch": ..., ...}`` (read with ``weights_only=True``); its state dict
holds the model's tensors, the loss's (``loss.*``: discriminator, perceptual network) and, when the run kept an
EMA of the weights with ``LitEma``, the EMA copy: ``model_ema.<parameter name without its dots>`` for every
trained parameter, plus ``model_ema.decay`` and ``model_ema.num_updates``. The publishers evaluate with the
EMA copy (``ema_scope``), so ``select_weights`` takes it when present, and says what it left out.
"""

from __future__ import annotations

from pathlib import Path

from torch import Tensor

from discotok.convert.base import ConvertError, listing, load_pickle

EMA = "model_ema."
EMA_BOOKKEEPING = ("model_ema.decay", "model_ema.num_updates")


def lightning_state(source: Path, what: str) -> dict[str, Tensor]:
    """The ``state_dict`` of a Lightning checkpoint (or a bare state dict) at ``source``, tensors only."""
    obj = load_pickle(source, what)
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict) or not state or not all(isinstance(v, Tensor) for v in state.values()):
        found = sorted(obj)[:8] if isinstance(obj, dict) else type(obj).__name__
        raise ConvertError(f"{source}: not {what}: expected a 'state_dict' of tensors, found {found}")
    return state


def select_weights(state: dict[str, Tensor], prefixes: tuple[str, ...], ema: bool = True
                   ) -> tuple[dict[str, Tensor], dict]:
    """The model's tensors (names starting with ``prefixes``) under their training names, from the EMA copy when
    the file holds one (and ``ema``), and what was left out: ``{"weights": "ema" | "training", "ignored":
    {kind: count}}``.

    Every tensor must be the model's, the loss's (``loss.*``) or the EMA copy's; anything else is refused, so a
    checkpoint of another format does not half-convert.
    """
    model = {k: v for k, v in state.items() if k.startswith(prefixes)}
    loss = [k for k in state if k.startswith("loss.")]
    copy = {k[len(EMA):]: v for k, v in state.items() if k.startswith(EMA) and k not in EMA_BOOKKEEPING}
    other = [k for k in state if k not in model and k not in loss and not k.startswith(EMA)]
    if other:
        parts = ", ".join(p.rstrip(".") for p in prefixes)
        raise ConvertError(f"tensors neither the model's ({parts}), the loss's nor the EMA copy's: {listing(other)}")
    flat = {k.replace(".", ""): k for k in model}
    if len(flat) != len(model):
        raise ConvertError("the model's tensor names collide once their dots are removed (LitEma's names), so the "
                           "EMA copy cannot be read")
    ema_of_model = {flat[k]: v for k, v in copy.items() if k in flat}
    ignored = {"loss (discriminator, perceptual network)": len(loss)}
    if ema and ema_of_model:
        absent = [k for k in model if k not in ema_of_model]
        if absent:
            raise ConvertError(f"the EMA copy lacks {len(absent)} of the model's tensors: "
                               f"{listing(EMA + k.replace('.', '') for k in absent)}")
        ignored["training weights (the EMA copy is used)"] = len(model)
        model = ema_of_model
    else:
        ignored["EMA copy of the model"] = len(ema_of_model)
    ignored["EMA copy of the loss"] = len(copy) - len(ema_of_model)
    ignored["EMA bookkeeping (decay, num_updates)"] = sum(k in state for k in EMA_BOOKKEEPING)
    weights = "ema" if ema and ema_of_model else "training"
    return model, {"weights": weights, "ignored": {k: n for k, n in ignored.items() if n}}
