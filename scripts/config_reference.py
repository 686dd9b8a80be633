"""Write docs/configuration.md, the configuration reference, from the pydantic models in medtune.config.

    python scripts/config_reference.py            # write docs/configuration.md
    python scripts/config_reference.py --check    # exit 1 if docs/configuration.md is not what it would write

Every key comes from ``Config.model_fields``, walked into each nested settings block, so a new key or section
appears here without a change to this script. Its "what it does" cell is the field's ``description``.
"""

from __future__ import annotations

import argparse
import json
import sys
import types
import typing
from pathlib import Path

from pydantic import BaseModel

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "configuration.md"
COMMAND = "python scripts/config_reference.py"

BOUNDS = {"ge": "≥", "gt": ">", "le": "≤", "lt": "<"}


def settings_blocks(model: type[BaseModel], prefix: str = "") -> list[tuple[str, type[BaseModel]]]:
    """(key path, model) for ``model`` and every settings block inside it, depth first, in field order."""
    blocks = [(prefix, model)]
    for name, field in model.model_fields.items():
        for inner, suffix in nested_models(field.annotation):
            path = f"{prefix}.{name}" if prefix else name
            blocks += settings_blocks(inner, path + suffix)
    return blocks


def nested_models(annotation) -> list[tuple[type[BaseModel], str]]:
    """The settings models a field holds: itself, as a mapping's value (``.<name>``) or a list's item."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [(annotation, "")]
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is dict and len(args) == 2:
        return [(model, f".<{key_word(args[0])}>" + suffix) for model, suffix in nested_models(args[1])]
    if origin is list and args:
        return [(model, "[]" + suffix) for model, suffix in nested_models(args[0])]
    if origin in (typing.Union, types.UnionType):
        return [found for arg in args for found in nested_models(arg)]
    return []


def key_word(annotation) -> str:
    return "name" if annotation is str else type_name(annotation)


def type_name(annotation) -> str:
    """A field's annotation in words: ``int``, ``int or null``, ``one of `a`, `b` ``, ``list of str``."""
    if annotation is type(None):
        return "null"
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return "one of " + ", ".join(f"`{value}`" for value in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(arg) for arg in args)
    if origin is list:
        return f"list of {type_name(args[0])}" if args else "list"
    if origin is dict:
        return f"mapping of {key_word(args[0])} to {type_name(args[1])}" if args else "mapping"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "block (its section below)"
    if isinstance(annotation, type) and issubclass(annotation, Path):
        return "path"
    return getattr(annotation, "__name__", str(annotation))


def bounds(field) -> str:
    """The field's numeric limits (``Field(ge=1)``) in words: ``≥ 1``."""
    found = []
    for item in field.metadata:
        for attr, sign in BOUNDS.items():
            value = getattr(item, attr, None)
            if value is not None:
                found.append(f"{sign} {value}")
    return ", ".join(found)


def default_value(field) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        return "–"
    if isinstance(value, Path):
        value = str(value)
    return f"`{json.dumps(value, ensure_ascii=False)}`"


def cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return " ".join(text.split()).replace("|", "\\|")


def block_table(model: type[BaseModel]) -> list[str]:
    rows = ["| key | type | default | what it does |", "|---|---|---|---|"]
    for name, field in model.model_fields.items():
        kind = type_name(field.annotation)
        if limits := bounds(field):
            kind += f", {limits}"
        rows.append(f"| `{name}` | {cell(kind)} | {cell(default_value(field))} | {cell(field.description or '')} |")
    return rows


def flatten(settings: dict, prefix: str = "") -> dict[str, object]:
    flat = {}
    for key, value in settings.items():
        path = f"{prefix}.{key}" if prefix else key
        flat.update(flatten(value, path) if isinstance(value, dict) else {path: value})
    return flat


def presets_table(presets: dict[str, dict], order: list[str]) -> list[str]:
    """One row per key any preset sets, in the order of the sections above; a column per preset."""
    flat = {name: flatten(settings) for name, settings in presets.items()}
    keys = sorted(dict.fromkeys(key for settings in flat.values() for key in settings),
                  key=lambda key: order.index(key) if key in order else len(order))
    rows = ["| key | " + " | ".join(f"`{name}`" for name in flat) + " |", "|---" * (len(flat) + 1) + "|"]
    for key in keys:
        values = [f"`{json.dumps(settings[key])}`" if key in settings else "–" for settings in flat.values()]
        rows.append(f"| `{key}` | " + " | ".join(values) + " |")
    return rows


def render() -> str:
    from medtune.config import PRESETS, Config

    lines = [
        "# Configuration reference",
        "",
        f"<!-- Written by `{COMMAND}` from the field descriptions in src/medtune/config.py.",
        "     Do not edit by hand: change config.py, then run the script;",
        "     tests/test_config_reference.py fails while this file is out of date. -->",
        "",
        "A study reads one YAML file (`--config FILE`; an example: [configs/example.yaml](../configs/example.yaml)).",
        "Precedence, lowest first: the preset, your YAML file, command-line flags. An unknown key is an error",
        "that names the key. The defaults below are the values without a preset; the study applies the `quick`",
        "preset unless you set `preset: full` (see [Presets](#presets) for what each one changes).",
        "",
    ]
    blocks = settings_blocks(Config)
    for path, model in blocks:
        title = f"`{path}:`" if path else "Top level"
        lines += [f"## {title}", ""]
        if model.__doc__:
            lines += [" ".join(model.__doc__.split()), ""]
        lines += [*block_table(model), ""]
    lines += [
        "## Presets",
        "",
        "`preset: quick` (the default, and `make demo`) is sized so that SFT's gain over the base model is",
        "decided on each bundled task; `preset: standard` is a CPU afternoon with the seed study's proportions",
        "(DPO long enough, and with its task check, for its comparison with SFT to be a measurement);",
        "`preset: full` uses whole datasets and paper-like epochs, meant for a GPU. Their wall times on 2 CPU",
        "cores: docs/performance.md; `medtune study --preset NAME --dry-run` estimates yours. Each sets only the",
        "keys below (–: the default above); your YAML file and flags override them. `per_task` rows apply to",
        "that task only.",
        "",
        *presets_table(PRESETS, [f"{path}.{name}" if path else name
                                  for path, model in blocks for name in model.model_fields]),
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None, out: Path = OUT) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help=f"exit 1 if {out.name} is not what this would write")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not out.is_file() or out.read_text(encoding="utf-8") != text:
            print(f"{out} is out of date with src/medtune/config.py; run `{COMMAND}` and commit it",
                  file=sys.stderr)
            return 1
        return 0
    out.write_text(text, encoding="utf-8")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
