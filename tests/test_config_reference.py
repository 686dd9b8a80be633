"""docs/configuration.md is generated from medtune.config by scripts/config_reference.py: a config change that
was not followed by `python scripts/config_reference.py` fails here."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def reference():
    spec = importlib.util.spec_from_file_location("config_reference", ROOT / "scripts" / "config_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_reference_is_current(reference, capsys):
    assert reference.main(["--check"]) == 0, (
        f"{capsys.readouterr().err}docs/configuration.md differs from what scripts/config_reference.py writes")


def test_check_fails_on_a_stale_file(reference, tmp_path, capsys):
    stale = tmp_path / "configuration.md"
    stale.write_text("# Configuration reference\n")
    assert reference.main(["--check"], out=stale) == 1
    assert "out of date" in capsys.readouterr().err
    assert reference.main(["--check"], out=tmp_path / "missing.md") == 1


def test_every_key_of_every_block_is_listed(reference):
    from medtune.config import PRESETS, Config

    text = reference.render()
    for path, model in reference.settings_blocks(Config):
        assert (f"## `{path}:`" if path else "## Top level") in text
        for name in model.model_fields:
            assert f"| `{name}` |" in text
    for settings in PRESETS.values():
        for key in reference.flatten(settings):
            assert f"| `{key}` |" in text
    assert "## `eval.judge:`" in text and "## `data.tasks.<name>:`" in text
