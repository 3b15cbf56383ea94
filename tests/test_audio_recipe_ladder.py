"""Issue 19, last item: the audio recipes at their published sizes (`experiment=encodec_24k`, `experiment=dac_44k`,
composed as the CLI composes them) keep the rate-distortion ladder their config comments state, after a short
seeded CPU training on the embedded espeak-ng speech, scored on clips the training never saw."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from discotok import Tokenizer
from discotok.data.audio import load_audio, resample_clips
from discotok.data.speech import espeak_binary, espeak_clips
from discotok.losses import LOSSES
from discotok.metrics.audio import mel_distance
from discotok.train.run import plain, tokenizer_spec
from tests.test_audio_training import composed_experiment
from tests.test_rvq_ladder import random_crops, residual_left, train_steps

HELD_OUT = 4  # the last clips of the embedded speech: never trained on

# experiment: (steps, batch, crop seconds, learning rate; the most of the code-space residual level 1 may leave,
# the most of the residual reaching it each later level may leave, the least mel distance full depth must gain
# over depth 1 or None where it is not checked). Measured figures in the test's docstring.
RECIPES = {
    "encodec_24k": (150, 4, 0.5, 3e-4, 0.5, 0.97, 0.002),
    "dac_44k": (40, 1, 0.38, 1e-4, 0.25, 0.87, None),
}


def recipe_speech(rate: int, cache: Path) -> list[torch.Tensor]:
    """The embedded espeak-ng speech (1, T) at ``rate``."""
    return resample_clips([load_audio(p, 22050, 1)[0] for p in espeak_clips(cache)], 22050, rate)


@pytest.mark.slow
@pytest.mark.skipif(espeak_binary() is None, reason="measured on espeak-ng speech")
@pytest.mark.usefixtures("flush_denormals")
@pytest.mark.parametrize("experiment", sorted(RECIPES))
def test_published_size_recipe_keeps_its_ladder(experiment: str, speech_cache) -> None:
    """The recipe, composed as `discotok train experiment=...` composes it, at full size, trained briefly (seed 0,
    Adam betas 0.8 / 0.99, reconstruction loss of the recipe plus the quantizer's, no GAN, random crops of 44 of
    the 48 espeak-ng clips), scored on the first second of the other 4. Measured (load 4-6 on 2 cores):

    * encodec_24k, 150 steps of 4 x 0.5 s at lr 3e-4 (152 s as a test, 4 min beside a second job): residual_left 0.192 at depth 1 (seed 1:
      0.265), every later level leaves at most 0.945 (0.941) of what reaches it; mel distance 0.629 / 0.625 at
      depth 1 / 8 (0.621 / 0.615), a gain of 0.004 (0.006), not monotone past depth 5 (the autoencoder is
      the limit this early, docs/audio.md). At lr 1e-3 the codebooks lag the moving encoder: levels 5-8 remove
      0.2-8 % and the mel distance rises with depth.
    * dac_44k, 40 steps of 1 x 0.38 s at lr 1e-4 (221 s as a test, 6 min beside a second job): residual_left 0.104 at depth 1, every later level
      leaves at most 0.74 of what reaches it (0.55-0.74); mel distance not checked: measured once (one thread)
      0.7023 at depth 1 and 0.7033-0.7036 at depths 2..9, flat, the decoder not yet using the finer levels after
      40 steps. At lr 3e-4 the loss rose over the 40 steps.

    Bounds: about twice the measured left-over at depth 1, half the smallest measured removed share, half the
    smallest measured mel gain."""
    steps, batch, seconds, lr, first_left, later_left, mel_gain = RECIPES[experiment]
    cfg = composed_experiment(experiment)
    rate = cfg.data.sample_rate
    clips = recipe_speech(rate, speech_cache)
    torch.manual_seed(0)
    tok = Tokenizer.from_config(tokenizer_spec(cfg))
    batches = random_crops(clips[:-HELD_OUT], steps, batch, int(seconds * rate))
    train_steps(tok, batches, LOSSES.build(plain(cfg.loss.reconstruction)), lr=lr, betas=(0.8, 0.99))
    hop = tok.modality.hop_length
    held_out = torch.stack([c[:, : rate // hop * hop] for c in clips[-HELD_OUT:]])  # the first second
    left = residual_left(tok, held_out)
    depth = tok.quantizer.depth
    assert sorted(left) == list(range(1, depth + 1))
    assert left[1] < first_left, left
    assert all(left[d + 1] < later_left * left[d] for d in range(1, depth)), left
    if mel_gain is not None:
        with torch.no_grad():
            mel = {d: float(mel_distance(tok.decode(tok.encode(held_out, depth=d)), held_out, rate).mean())
                   for d in (1, depth)}
        assert mel[depth] < mel[1] - mel_gain, mel
