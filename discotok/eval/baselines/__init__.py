"""Classical codecs beside the tokenizers in every ``discotok eval`` report, at the tokenizers' own
bit rates: one entry point per modality (``image_baselines``, ``audio_baselines``), one file per
codec, the shared contract and runner in ``contract``."""

from discotok.eval.baselines.audio import audio_baselines
from discotok.eval.baselines.image import image_baselines

__all__ = ["audio_baselines", "image_baselines"]
