"""The README's two opening commands stay what CI and a new user run."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def opening_commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    return [b.strip() for b in blocks[:2]]


def test_ci_runs_the_readme_test_command():
    setup_and_train, setup_and_test = opening_commands()
    assert setup_and_train.endswith("discotok train")
    assert setup_and_test.endswith("pytest")
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert setup_and_test in ci_lines
    started = [line for line in ci_lines if line.startswith(setup_and_train + " trainer.max_steps=2")]
    assert len(started) == 1, "CI must start the README's first command (two steps)"


def test_smoke_experiment_only_shrinks_the_default():
    """The shortened train command in the suite differs from `discotok train` in size only."""
    smoke = (ROOT / "configs" / "experiment" / "smoke.yaml").read_text()
    top_level = {line.split(":")[0] for line in smoke.splitlines() if re.match(r"^[a-z_]+:", line)}
    assert top_level == {"encoder", "data", "trainer"}
    assert "quantizer" not in smoke and "name:" not in smoke
