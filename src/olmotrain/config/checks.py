"""Checks of what a user wrote, before Hydra or any work starts: group choices, keys, modes.

Each failure is a :class:`~olmotrain.errors.UserError` naming the problem and the closest valid
names; :func:`olmotrain.errors.run_hydra` turns it into one line and exit 2.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import fields, is_dataclass
from typing import Any, get_type_hints

from olmotrain.config import schema
from olmotrain.config.compose import CONFIG_DIR, GROUPS, compose, group_options
from olmotrain.config.file_errors import group_file_mistake, yaml_mistake
from olmotrain.errors import UserError, user_error_line

DRY_RUN_MODES = {
    False: None,
    "false": None,
    True: "table",
    "true": "table",
    "table": "table",
    "json": "json",
}


def dry_run_mode(value: Any) -> str | None:
    """``None`` (train), ``table`` or ``json`` for the ``dry_run`` setting."""
    if not isinstance(value, (bool, str)) or value not in DRY_RUN_MODES:
        raise UserError(f"dry_run={value} is not one of false, true, json")
    return DRY_RUN_MODES[value]


def check_group_choices(args: list[str]) -> None:
    """Reject ``group=name`` overrides naming no config file, with the closest names as a hint."""
    for arg in args:
        m = re.fullmatch(r"([a-z_]+)=(.*)", arg)
        if not m or m.group(1) not in GROUPS:
            continue
        group, value = m.groups()
        if value in ("null", "") or re.match(
            r"^\w+\(", value
        ):  # sweep functions: Hydra checks them
            continue
        options = group_options(group, CONFIG_DIR)
        for choice in value.split(","):
            if choice not in options:
                close = difflib.get_close_matches(choice, options, n=3, cutoff=0.5)
                hint = (
                    f"did you mean {' or '.join(close)}?"
                    if close
                    else f"choose from: {', '.join(options)}"
                )
                raise UserError(
                    f"unknown {group} '{choice}'; {hint} (configs live in conf/{group}/)"
                )


def schema_keys(cls: Any = schema.RunSchema, prefix: str = "") -> list[str]:
    """Every dotted key of the run config schema (``train.max_steps``, ...)."""
    keys = []
    hints = get_type_hints(cls)
    for f in fields(cls):
        key = f"{prefix}{f.name}"
        keys.append(key)
        if is_dataclass(hints[f.name]):
            keys += schema_keys(hints[f.name], f"{key}.")
    return keys


def check_known_keys(cfg: Any) -> None:
    """Reject keys the schema does not know (``+key=value`` slips past Hydra's struct check)."""
    keys = set(schema_keys())
    for key in cfg:
        if key not in keys:
            raise UserError(f"unknown config key '{key}'; {suggest_key(str(key))}")
    for section in (
        "train",
        "cluster",
        "parallel",
        "schedule",
        "tokenizer",
        "model",
        "wandb",
        "eval",
    ):
        for key in cfg.get(section) or {}:
            if f"{section}.{key}" not in keys:
                raise UserError(
                    f"unknown config key '{section}.{key}'; {suggest_key(f'{section}.{key}')}"
                )


def suggest_key(key: str) -> str:
    """``did you mean ...?`` for a mistyped config key, or where the keys are listed."""
    keys = schema_keys()
    parent, _, leaf = key.rpartition(".")
    siblings = [k for k in keys if k.rpartition(".")[0] == parent]
    close = difflib.get_close_matches(key, keys, n=2, cutoff=0.75) or [
        k
        for k in siblings
        if k.rpartition(".")[2]
        in difflib.get_close_matches(
            leaf, [s.rpartition(".")[2] for s in siblings], n=2, cutoff=0.6
        )
    ]
    if close:
        return f"did you mean {' or '.join(close)}?"
    return "see docs/config-reference.md"


HYDRA_ERRORS = (
    "OverrideParseException",
    "ConfigCompositionException",
    "MissingMandatoryValue",
    "ValidationError",
    "InterpolationResolutionError",
    "ConfigKeyError",
)


def explain(exc: BaseException) -> tuple[str, int] | None:
    """``(one line, exit code)`` for a known user-caused error (walking its causes), else ``None``."""
    known = user_error_line(exc)
    if known is not None:
        return known
    chain: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and seen not in chain:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    text = "\n".join(str(e) for e in chain)
    # A mistake in a config file: name the file and the key.
    in_file = group_file_mistake(text) or next(filter(None, map(yaml_mistake, chain)), None)
    if in_file is not None:
        return in_file, 2
    full_key = re.search(r"full_key: (\S+)", text)
    key = full_key.group(1) if full_key else None
    overridden = re.search(r"Could not override '([^']+)'", text)
    if overridden and key and key.startswith(overridden.group(1) + "."):
        # A mapping given for a mapping is merged into it, so a new key is refused.
        mapping, leaf = overridden.group(1), key[len(overridden.group(1)) + 1 :]
        return (
            f"{mapping} has no key '{leaf}' to merge into; add it with ++{key}=..., or replace "
            f"the whole mapping with {mapping}=null {mapping}={{...}}",
            2,
        )
    if m := overridden or re.search(r"Key '([^']+)' is not in struct", text):
        key = m.group(1) if "." in m.group(1) or not key else key
        return f"unknown config key '{key}'; {suggest_key(key)}", 2
    if m := re.search(r"Value '([^']*)' of type '\w+' could not be converted to (\w+)", text):
        return f"{key or 'a value'}='{m.group(1)}' is not a valid {m.group(2).lower()}", 2
    if m := re.search(r"Could not find '([^']+)'", text):
        return f"config '{m.group(1)}' not found (configs live in conf/)", 2
    if type(exc).__name__ == "OverrideParseException":
        return f"could not parse an override ({text.strip().splitlines()[0]}); write key=value", 2
    if any(type(e).__name__ in HYDRA_ERRORS for e in chain):
        return text.strip().splitlines()[0], 2
    return None


def compose_checked(overrides: list[str]):
    """:func:`olmotrain.config.compose.compose` with bad overrides as one ``UserError``: unknown
    group choices (with close names), keys and values as ``train.py`` reports them."""
    check_group_choices(list(overrides))
    try:
        cfg = compose(list(overrides))
        check_known_keys(cfg)
        return cfg
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - only known kinds are translated
        known = explain(exc)
        if known is None:
            raise
        raise UserError(known[0]) from exc
