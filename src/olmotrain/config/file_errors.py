"""A mistake in a config file the user wrote, as one line naming the file, the key and the fix.

OmegaConf refuses a bad key or value while Hydra composes, but its message loses where the
value came from: a typo inside ``sources:`` is reported as ``Key 'ratoi' not in
'SourceSchema'``, a string for a list as ``AnyNode is not a ListConfig``. Once composition has
failed in a file (Hydra says ``In 'data/mine'``), :func:`find_mistake` walks that file's YAML
along the schema's dataclasses to name the dotted key (list entries by their ``name:``) and what
it must be. Values are converted by OmegaConf's own nodes, so what passes here passes there.
Ladder configs (``olmotrain.ladder.config``) use the same walk.
"""

from __future__ import annotations

import difflib
import json
import re
import types
from dataclasses import fields, is_dataclass
from typing import Any, Union, get_args, get_origin, get_type_hints

import yaml
from omegaconf.errors import OmegaConfBaseException
from omegaconf.nodes import BooleanNode, FloatNode, IntegerNode, StringNode

from olmotrain.config.compose import CONFIG_DIR
from olmotrain.config.schema import RunSchema

_SCALARS = {int: IntegerNode, float: FloatNode, bool: BooleanNode, str: StringNode}
_KINDS = {int: "a whole number", float: "a number", bool: "true or false", str: "text"}
_HYDRA_ONLY = {"defaults", "hydra"}
"""Top-level keys of a config file that are Hydra's, not the run config's."""


def find_mistake(values: Any, cls: type, prefix: str = "") -> str | None:
    """The first key in ``values`` (a YAML file's content) that dataclass ``cls`` refuses, as
    ``unknown key 'a.b'; did you mean c?`` or ``a.b must be a list, ...``; ``None`` if none."""
    if not isinstance(values, dict):
        return f"{prefix or 'the file'} must be a mapping (key: value lines), not {_what(values)}"
    hints = get_type_hints(cls)
    names = [f.name for f in fields(cls)]
    for key, value in values.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if key not in hints:
            return f"unknown key '{dotted}'; {_suggest(str(key), names)}"
        problem = _check(value, hints[key], dotted)
        if problem:
            return problem
    return None


def _check(value: Any, hint: Any, dotted: str) -> str | None:
    """What is wrong with ``value`` for a field typed ``hint`` (``None``: nothing found)."""
    hint = _unwrap_optional(hint)
    if value is None or hint is Any or _is_interpolation(value):
        return None  # null for a required value is OmegaConf's "missing" line, not a type error
    if is_dataclass(hint):
        if isinstance(value, dict):
            return find_mistake(value, hint, dotted)
        return _must_be(dotted, "a mapping (key: value lines)", value)
    origin = get_origin(hint)
    if origin is dict or hint is dict:
        return None if isinstance(value, dict) else _must_be(dotted, "a mapping", value)
    if origin is list or hint is list:
        if not isinstance(value, list):
            leaf = dotted.rpartition(".")[2]
            fix = f"; write {leaf}: [{json.dumps(value)}]" if _is_scalar(value) else ""
            return _must_be(dotted, "a list", value) + fix
        (item,) = get_args(hint) or (Any,)
        for i, entry in enumerate(value):
            label = entry.get("name") if isinstance(entry, dict) else None
            name = f"{dotted}.{label}" if isinstance(label, str) else f"{dotted}[{i}]"
            problem = _check(entry, item, name)
            if problem:
                return problem
        return None
    node = _SCALARS.get(hint)
    if node is None:
        return None
    if not _is_scalar(value):
        return _must_be(dotted, _KINDS[hint], value)
    try:
        node(value)  # OmegaConf's own conversion: "3" is a fine int, "three" is not
    except (OmegaConfBaseException, ValueError):
        return _must_be(dotted, _KINDS[hint], value)
    return None


def _must_be(dotted: str, kind: str, value: Any) -> str:
    return f"{dotted} must be {kind}, not {_what(value)}"


def _what(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"the text '{value}'"
    return f"{json.dumps(value)}"


def _suggest(key: str, names: list[str]) -> str:
    close = difflib.get_close_matches(key, names, n=2, cutoff=0.6)
    if close:
        return f"did you mean {' or '.join(close)}?"
    return f"the keys there are {', '.join(names)}"


def _unwrap_optional(hint: Any) -> Any:
    if get_origin(hint) in (Union, types.UnionType):
        args = [a for a in get_args(hint) if a is not type(None)]
        return args[0] if len(args) == 1 else Any
    return hint


def _is_scalar(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool))


def _is_interpolation(value: Any) -> bool:
    return isinstance(value, str) and "${" in value


_COMPOSING = re.compile(r"In '([\w./-]+)': \w+ raised while composing config")


def group_file_mistake(error_text: str) -> str | None:
    """For Hydra's ``In 'GROUP/NAME': ... raised while composing config`` in ``error_text``:
    ``conf/GROUP/NAME.yaml: <the mistake>``, or ``None`` when that file shows none."""
    match = _COMPOSING.search(error_text)
    if match is None or "/" not in match.group(1):
        return None
    option = match.group(1)
    path = CONFIG_DIR / f"{option}.yaml"
    if not path.is_file():
        return None
    where = f"conf/{option}.yaml"
    text = path.read_text()
    try:
        values = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        return f"{where} is not valid YAML ({str(exc).splitlines()[0]})"
    cls = _package(text, option.split("/")[0])
    if isinstance(values, dict):
        values = {k: v for k, v in values.items() if k not in _HYDRA_ONLY or cls is not RunSchema}
        values.pop("defaults", None)
    mistake = find_mistake(values or {}, cls)  # keys as written in the file, not data.x
    return f"{where}: {mistake}" if mistake else None


def yaml_mistake(exc: BaseException, shown: str | None = None) -> str | None:
    """``FILE: not valid YAML (...) at line N, column M`` for a YAML syntax error; ``shown``
    names the file (default: the one the error names, conf/ relative)."""
    if not isinstance(exc, yaml.MarkedYAMLError) or exc.problem_mark is None:
        return None
    mark = exc.problem_mark
    name = shown or mark.name
    if name.startswith(str(CONFIG_DIR)):
        name = "conf" + name[len(str(CONFIG_DIR)) :]
    where = f"at line {mark.line + 1}, column {mark.column + 1}"
    return f"{name}: not valid YAML ({exc.problem} {where})"


def _package(text: str, group: str) -> type:
    """The schema dataclass a group file's top level is (Hydra's ``# @package`` header; by
    default the group's own key)."""
    header = re.search(r"^#\s*@package\s+(\S+)", text, re.MULTILINE)
    package = header.group(1) if header else group
    package = "" if package == "_global_" else package.replace("_group_", group)
    cls: Any = RunSchema
    for part in filter(None, package.split(".")):
        cls = _unwrap_optional(get_type_hints(cls).get(part))
        if not is_dataclass(cls):
            return RunSchema
    return cls
