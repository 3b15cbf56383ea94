"""``discotok train init_from=DIR``: fine-tuning starts from a converted published codec's weights (strictly),
trains with the GAN losses, and refuses data whose rate is not the tokenizer's."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from hydra import compose, initialize_config_dir

from discotok import Tokenizer
from discotok.convert import convert
from discotok.registry import ConfigError
from discotok.train.run import config_dir, train

dac = pytest.importorskip("dac")
encodec = pytest.importorskip("encodec")


def converted_encodec(tmp_path):
    from tests.conftest import randomised
    from tests.test_convert_encodec import small_reference

    torch.save(randomised(small_reference()).state_dict(), tmp_path / "encodec.th")
    return convert("encodec", tmp_path / "encodec.th", tmp_path / "encodec"), tmp_path / "encodec", 24_000


def converted_dac(tmp_path):
    from tests.test_convert_dac import reference, saved

    return convert("dac", saved(reference("even_rates"), tmp_path / "dac.pth"), tmp_path / "dac"), tmp_path / "dac", 16_000


def finetune(tmp_path, init_from, rate, speech_folder, *extra: str) -> dict:
    overrides = [
        "experiment=encodec_24k", "trainer=cpu", "trainer.max_steps=2", "trainer.val_check_interval=2",
        "trainer.enable_progress_bar=false", "logger.tensorboard=false", f"init_from={init_from}",
        f"data.source={speech_folder}", f"data.sample_rate={rate}", "data.batch_size=2", "data.segment_seconds=0.1",
        "data.val_samples=2", "data.val_seconds=0.5", "data.num_workers=0", "loss.adversarial.start_step=0",
        f"+output_dir={tmp_path / 'run'}", *extra,
    ]
    with initialize_config_dir(config_dir(), version_base=None):
        cfg = compose("train", overrides=overrides)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return train(cfg)


@pytest.mark.parametrize("source", [converted_encodec, converted_dac])
def test_two_gan_steps_from_a_converted_codec(source, tmp_path, speech_folder, caplog):
    start, path, rate = source(tmp_path)
    with caplog.at_level("INFO"):
        summary = finetune(tmp_path, path, rate, speech_folder)
    assert f"from {path}; fresh: adversarial (" in caplog.text  # the discriminators start fresh
    assert summary["steps"] == 2 and summary["init_from"] == str(path) and summary["sample_rate"] == rate
    tuned = Tokenizer.from_pretrained(summary["tokenizer_dir"])
    assert {k: v for k, v in tuned.config.items() if k != "metadata"} == {
        k: v for k, v in start.config.items() if k != "metadata"}
    before, after = dict(start.named_parameters()), dict(tuned.named_parameters())
    moved = [k for k in before if not torch.equal(before[k], after[k])]
    assert moved, "two steps changed no weight"
    drift = max(float((after[k] - before[k]).abs().max() / before[k].abs().max().clamp(min=1e-6)) for k in moved)
    assert drift < 0.5, "the run did not start from the converted weights"
    logged = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert logged["init_from"] == str(path)


def test_data_at_another_rate_is_refused(tmp_path, speech_folder):
    _, path, _ = converted_encodec(tmp_path)
    with pytest.raises(ConfigError, match=r"sample_rate is 24000 but the data's is 16000; set data.sample_rate=24000"):
        finetune(tmp_path, path, 16_000, speech_folder)
