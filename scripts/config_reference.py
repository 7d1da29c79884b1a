"""Write docs/config-reference.md from the run config's schema and its defaults.

    python scripts/config_reference.py           # (re)write the reference (make docs)
    python scripts/config_reference.py --check   # exit 1 with one line when it is stale

The meaning of each key is the docstring right after its field in
``src/olmotrain/config/schema.py``; its default is the value ``conf/config.yaml`` (or the group
config its defaults list picks) gives it, else the schema's. The schema is read with ``ast``, not
imported, so this runs without Hydra or torch and in a fraction of a second.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "src" / "olmotrain" / "config" / "schema.py"
CONF = ROOT / "conf"
OUTPUT = ROOT / "docs" / "config-reference.md"
ROOT_CLASS = "RunSchema"
SKIP_SECTIONS = {"derived"}  # computed values, not settings (gone once the plan is its own file)
# Untyped fields whose accepted keys a schema class documents (see their docstrings).
SHAPE_OF = {"data.instance_filter": "InstanceFilterSchema"}
GROUPS_WITHOUT_SECTION = {
    "experiment": "presets: each may set any key of any group",
    "ladder": "for `python -m olmotrain.ladder`, not `train.py`: see [ladders.md](ladders.md)",
}
GROUP_NOTES = {
    "data": "plus the `<name>_proposed` mixes `olmotrain mixture` writes: see [mixtures.md](mixtures.md)",
}
LONG_DEFAULT = 80  # characters; longer defaults point at the file that sets them


@dataclass
class Field:
    """One schema field as written in the source."""

    name: str
    annotation: str
    default: Any
    """The default as the schema gives it: a Python value, ``REQUIRED``, or a class name."""
    doc: str


@dataclass
class SchemaClass:
    """One schema dataclass: its docstring and fields, in source order."""

    name: str
    doc: str
    fields: list[Field]


REQUIRED = object()  # omegaconf's MISSING: the group config (or the user) must set it


def read_schema(source: str) -> dict[str, SchemaClass]:
    """Every class of the schema module with its fields and their attribute docstrings."""
    classes = {}
    for node in ast.parse(source).body:
        if not isinstance(node, ast.ClassDef):
            continue
        fields: list[Field] = []
        for stmt, following in zip(node.body, [*node.body[1:], None], strict=True):
            if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)):
                continue
            doc = ""
            if isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant):
                doc = str(following.value.value)
            fields.append(
                Field(stmt.target.id, ast.unparse(stmt.annotation), _default(stmt.value), doc)
            )
        classes[node.name] = SchemaClass(node.name, ast.get_docstring(node) or "", fields)
    return classes


def _default(node: ast.expr | None) -> Any:
    """A field's default from its AST: a literal, REQUIRED, ``[]``/``{}``, or a class name."""
    if node is None or (isinstance(node, ast.Name) and node.id == "MISSING"):
        return REQUIRED
    if isinstance(node, ast.Call) and ast.unparse(node.func) == "field":
        factory = next(k.value for k in node.keywords if k.arg == "default_factory")
        if isinstance(factory, ast.Lambda):
            factory = factory.body.func if isinstance(factory.body, ast.Call) else factory.body
        name = ast.unparse(factory)
        return {"list": [], "dict": {}}.get(name, name)
    return ast.literal_eval(node)


def read_defaults() -> tuple[dict[str, Any], dict[str, str]]:
    """The values ``conf/config.yaml`` and its default group configs set, merged by section,
    and the default choice of every group (``{"model": "olmo2_14m", ...}``)."""
    config = yaml.safe_load((CONF / "config.yaml").read_text())
    choices: dict[str, str] = {}
    for entry in config.get("defaults", []):
        if isinstance(entry, dict):
            (group, choice), *_ = entry.items()
            if (CONF / str(group)).is_dir():
                choices[str(group)] = choice
    values = {k: v for k, v in config.items() if k not in ("defaults", "hydra")}
    for group, choice in choices.items():
        if choice is None:
            continue
        path = CONF / group / f"{choice}.yaml"
        text = path.read_text()
        loaded = yaml.safe_load(text) or {}
        if "# @package _global_" in text:
            loaded = loaded.get(group, {})
        values[group] = {**values.get(group, {}), **loaded}
    return values, choices


def _lookup(values: dict[str, Any], dotted: str) -> tuple[bool, Any]:
    """``(found, value)`` of a dotted key in nested dicts."""
    node: Any = values
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _format_value(value: Any) -> str:
    """A default as a person would write it in YAML or on the command line."""
    if value is REQUIRED:
        return "required"
    if isinstance(value, str) and not value:
        return "`''`"
    text = yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()
    text = text.removesuffix("\n...").strip()
    return f"`{text}`"


def _clean(doc: str) -> str:
    """A docstring as one Markdown table cell: one line, RST markup as Markdown, pipes escaped."""
    text = " ".join(doc.split())
    text = re.sub(r":\w+:`([^`]+)`", r"`\1`", text)
    text = text.replace("``", "`")
    return text.replace("|", "\\|")


def _rows(
    classes: dict[str, SchemaClass],
    cls: SchemaClass,
    prefix: str,
    values: dict[str, Any],
    source: str = "conf/config.yaml",
) -> list[tuple[str, str, str, str]]:
    """``(key, type, default, meaning)`` of every field, nested schema blocks flattened."""
    rows = []
    for f in cls.fields:
        key = f"{prefix}{f.name}"
        nested = _schema_class(classes, f.annotation)
        if nested is not None and not f.annotation.startswith("list["):
            rows.extend(_rows(classes, classes[nested], f"{key}.", values, source))
            continue
        found, value = _lookup(values, key)
        default = _format_value(value if found else f.default)
        if len(default) > LONG_DEFAULT:
            default = f"see `{source}`"
        rows.append((f"`{key}`", f"`{f.annotation}`".replace("|", "\\|"), default, _clean(f.doc)))
    return rows


def _schema_class(classes: dict[str, SchemaClass], annotation: str) -> str | None:
    """The schema class an annotation names (``X``, ``X | None``, ``list[X]``), if any."""
    names = re.findall(r"[A-Za-z_]\w*", annotation)
    return next((n for n in names if n in classes), None)


def _table(rows: list[tuple[str, str, str, str]]) -> list[str]:
    lines = ["| key | type | default | meaning |", "|---|---|---|---|"]
    lines += [f"| {' | '.join(row)} |" for row in rows]
    return lines


def _group_options(group: str) -> list[str]:
    # `<name>_proposed` data configs are written by `olmotrain mixture` (and its tests) at any
    # time, so listing them would make this page stale whenever one appears.
    return sorted(p.stem for p in (CONF / group).glob("*.yaml") if not p.stem.endswith("_proposed"))


def render() -> str:
    """The whole reference page."""
    classes = read_schema(SCHEMA.read_text())
    values, choices = read_defaults()
    root = classes[ROOT_CLASS]
    out = [
        "# Config reference",
        "",
        "<!-- Generated by scripts/config_reference.py from src/olmotrain/config/schema.py and",
        "     conf/. Do not edit by hand: run `make docs`. -->",
        "",
        "Every key can be set on the command line as `key=value` (`python train.py "
        "train.max_steps=20`); a misspelled key or a value of the wrong type is refused before "
        "anything runs. Defaults are those of `conf/config.yaml` and the group configs it picks; "
        "*required* keys are set by the chosen group config. What the keys lead to (batch, "
        "learning rate, duration, checkpoints, memory, cost) is the plan: see [plan.md](plan.md).",
        "",
        *_groups_table(choices),
    ]
    top = [f for f in root.fields if _schema_class(classes, f.annotation) is None]
    out += ["", "## Top-level keys", "", *_table(_rows(classes, _only(root, top), "", values))]
    for f in root.fields:
        if _schema_class(classes, f.annotation) is not None and f.name not in SKIP_SECTIONS:
            out += _section(classes, f, values, choices)
    return "\n".join(out) + "\n"


def _groups_table(choices: dict[str, str]) -> list[str]:
    """The config groups: default choice and every option (the files of ``conf/<group>/``)."""
    out = [
        "## Config groups",
        "",
        "Pick one config of a group with `group=name` (the files are `conf/<group>/<name>.yaml`).",
        "",
        "| group | default | options |",
        "|---|---|---|",
    ]
    groups = [g for g in choices if g not in SKIP_SECTIONS]
    groups += [g for g in GROUPS_WITHOUT_SECTION if g not in groups]
    for group in groups:
        default = choices.get(group)
        shown = f"`{default}`" if default else "none"
        options = ", ".join(f"`{o}`" for o in _group_options(group))
        note = GROUPS_WITHOUT_SECTION.get(group) or GROUP_NOTES.get(group)
        out.append(f"| `{group}` | {shown} | {options}{f'; {note}' if note else ''} |")
    return out


def _section(
    classes: dict[str, SchemaClass], f: Field, values: dict[str, Any], choices: dict[str, str]
) -> list[str]:
    """One section of the run config (``model``, ``train``, ...) with its sub-tables."""
    cls = classes[_schema_class(classes, f.annotation) or ""]
    out = ["", f"## `{f.name}`", "", _clean(cls.doc).replace("\\|", "|")]
    source = "conf/config.yaml"
    if f.name in choices:
        out += ["", f"Set by the `{f.name}` group (default `{choices[f.name]}`)."]
        source = f"conf/{f.name}/{choices[f.name]}.yaml"
    out += ["", *_table(_rows(classes, cls, f"{f.name}.", values, source))]
    for sub in cls.fields:
        sub_name = _schema_class(classes, sub.annotation)
        key = f"{f.name}.{sub.name}"
        if sub.annotation.startswith("list[") and sub_name:
            shape, title = classes[sub_name], f"### `{key}[]`: each entry"
            prefix = f"{key}[]."
        elif key in SHAPE_OF:
            shape, title = classes[SHAPE_OF[key]], f"### `{key}`: its keys"
            prefix = f"{key}."
        else:
            continue
        out += ["", title, "", _clean(shape.doc).replace("\\|", "|"), ""]
        out += _table(_rows(classes, shape, prefix, {}))
    return out


def _only(cls: SchemaClass, fields: list[Field]) -> SchemaClass:
    return SchemaClass(cls.name, cls.doc, fields)


def main(argv: list[str] | None = None) -> int:
    """Write the reference, or with ``--check`` say whether it is current (exit 1 if not)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when the file is stale")
    args = parser.parse_args(argv)
    text = render()
    relative = OUTPUT.relative_to(ROOT)
    if args.check:
        if not OUTPUT.is_file() or OUTPUT.read_text() != text:
            print(f"{relative} is stale: run `make docs` to regenerate it", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text)
    print(f"wrote {relative}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
