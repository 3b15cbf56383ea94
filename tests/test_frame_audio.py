"""The ``frame`` waveform encoder and decoder: shapes, hop, batch invariance with lengths, bad sizes."""

from __future__ import annotations

import pytest
import torch

from discotok import Tokenizer
from tests.conftest import AUDIO_RATE


def frame_config(hop: int = 40, window: int | None = None) -> dict:
    """A tiny frame tokenizer (width 16, 4 values per frame, RVQ 2 x 16) at ``hop`` / ``window``."""
    frame = {"latent_dim": 4, "hop_length": hop, "window": window, "width": 16, "dilations": [1, 3]}
    return {"modality": "audio", "sample_rate": AUDIO_RATE, "channels": 1,
            "encoder": {"name": "frame", **frame}, "decoder": {"name": "frame", **frame},
            "quantizer": {"name": "rvq", "dim": 4, "depth": 2, "codebook_size": 16}}


def test_frame_tokenizer_shapes_and_rates(speech_clips) -> None:
    torch.manual_seed(0)
    tok = Tokenizer.from_config(frame_config()).eval()
    x = torch.stack([c[:, :1000] for c in speech_clips[:2]])
    ids = tok.encode(x)
    assert ids.shape == (2, 25, 2) and tok.modality.frames_per_second == 400
    assert tok.decode(ids).shape == (2, 1, 1000)


def test_frame_tokenizer_is_batch_invariant(speech_clips) -> None:
    """An item of a zero-padded batch gets, over its frames, the ids and samples it gets alone."""
    torch.manual_seed(0)
    tok = Tokenizer.from_config(frame_config(window=120)).eval()
    lengths = torch.tensor([1000, 613])
    x = torch.stack([c[:, :1000] for c in speech_clips[:2]])
    x[1, :, 613:] = torch.randn(1, 387)  # garbage past the second item's length
    with torch.no_grad():
        ids = tok.encode(x, lengths=lengths)
        alone = tok.encode(x[1:, :, :613])
        assert torch.equal(ids[1, : alone.shape[1]], alone[0])
        decoded = tok.decode(ids, lengths=lengths)
        torch.testing.assert_close(decoded[1, :, :613], tok.decode(alone)[0, :, :613], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("hop, window", [(40, 30), (40, 81), (0, None)])
def test_frame_sizes_are_checked(hop: int, window: int | None) -> None:
    with pytest.raises(ValueError, match="hop_length"):
        Tokenizer.from_config(frame_config(hop, window))
