"""Streaming encode / decode of causal codecs (ours and a converted EnCodec) give exactly the offline ids and
the offline audio, whatever the chunk sizes; a frame's ids come as soon as its hop is in."""

from __future__ import annotations

import pytest
import torch

from discotok import Tokenizer
from discotok.convert import convert
from tests.conftest import tiny_audio_config

CHUNKINGS = {"one_sample": [1], "odd": [7, 64, 333], "whole": [10**6], "hop_and_a_bit": [65]}


def streamed_ids(tok: Tokenizer, x: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    stream = tok.modality.encode_stream()
    parts, pos, i = [], 0, 0
    while pos < x.shape[-1]:
        size = sizes[i % len(sizes)]
        parts.append(stream.push(x[..., pos : pos + size]))
        pos, i = pos + size, i + 1
    parts.append(stream.flush())
    return torch.cat(parts, dim=1)


def streamed_audio(tok: Tokenizer, ids: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    stream = tok.modality.decode_stream()
    parts, pos, i = [], 0, 0
    while pos < ids.shape[1]:
        size = sizes[i % len(sizes)]
        parts.append(stream.push(ids[:, pos : pos + size]))
        pos, i = pos + size, i + 1
    parts.append(stream.flush())
    return torch.cat(parts, dim=-1)


@pytest.fixture(scope="module")
def codecs(tmp_path_factory) -> dict[str, Tokenizer]:
    torch.manual_seed(0)
    out = {"ours_causal_lstm": Tokenizer.from_config(tiny_audio_config(causal=True)).eval(),
           "ours_causal_conv": Tokenizer.from_config(tiny_audio_config(causal=True, sequence="none")).eval()}
    encodec = pytest.importorskip("encodec")
    from tests.conftest import randomised
    from tests.test_convert_encodec import small_reference

    folder = tmp_path_factory.mktemp("encodec")
    torch.save(randomised(small_reference()).state_dict(), folder / "small.th")
    out["encodec_small"] = convert("encodec", folder / "small.th")
    del encodec
    return out


@pytest.mark.parametrize("name", ["ours_causal_lstm", "ours_causal_conv", "encodec_small"])
@pytest.mark.parametrize("chunking", list(CHUNKINGS))
def test_streaming_equals_offline(codecs, name, chunking, speech_clips):
    tok = codecs[name]
    x = torch.stack([speech_clips[0][:, :1500], speech_clips[1][:, :1500]])  # 1500: not a multiple of any hop
    offline = tok.encode(x)
    ids = streamed_ids(tok, x, CHUNKINGS[chunking])
    assert torch.equal(ids, offline)
    audio = streamed_audio(tok, ids, [1, 3, 2, 5])
    assert (audio - tok.decode(offline)).abs().max() < 1e-5


def test_full_size_encodec_streams_exactly(tmp_path, speech_clips):
    encodec = pytest.importorskip("encodec")
    from tests.conftest import randomised

    torch.save(randomised(encodec.EncodecModel.encodec_model_24khz(pretrained=False)).state_dict(), tmp_path / "e.th")
    tok = convert("encodec", tmp_path / "e.th")
    x = speech_clips[2][None, :, :2000]
    assert torch.equal(streamed_ids(tok, x, [160, 1, 999]), tok.encode(x))
    ids = tok.encode(x)
    assert (streamed_audio(tok, ids, [1, 2]) - tok.decode(ids)).abs().max() < 1e-5


def test_a_frame_comes_as_soon_as_its_hop_is_in(codecs, speech_clips):
    tok = codecs["ours_causal_lstm"]
    hop = tok.modality.hop_length
    stream = tok.modality.encode_stream()
    x = speech_clips[0][None, :, : 6 * hop]
    counts = [stream.push(x[..., i * hop : (i + 1) * hop]).shape[1] for i in range(6)]
    assert counts == [1] * 6  # one hop in, its frame out: one hop of algorithmic latency
    assert stream.flush().shape[1] == 0
    decode = tok.modality.decode_stream()
    assert decode.push(tok.encode(x)[:, :1]).shape[-1] == hop  # a frame decodes to its hop at once


def test_lookahead_models_refuse_to_stream():
    with pytest.raises(ValueError, match="only a causal encoder streams"):
        Tokenizer.from_config(tiny_audio_config(causal=False)).modality.encode_stream()
    with pytest.raises(ValueError, match="decoder VocosDecoder does not stream"):
        Tokenizer.from_config(tiny_audio_config(causal=True, decoder="vocos")).modality.decode_stream()
    with pytest.raises(ValueError, match="a transformer sequence model does not stream"):
        Tokenizer.from_config(tiny_audio_config(causal=True, sequence="transformer")).modality.encode_stream()


def test_stream_benchmark_reports_latency_and_keeps_the_offline_ids():
    from discotok.bench.stream import format_table, measure

    row = measure(["experiment=audio_seanet_tiny", "encoder.causal=true", "decoder.causal=true", "data.source=unused"],
                  chunk_ms=30, seconds=0.5)
    assert row["ids_equal_offline"] and row["latency_ms"] == 20.0 and row["first_frame_after_ms"] == 30.0
    assert row["chunk_rtf_median"] > 0 and "| 30 | 20.0 | 30.0 |" in format_table([row])
