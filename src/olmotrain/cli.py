"""Command-line guard: bad input becomes one readable line on stderr and exit code 2.

Hydra normally prints multi-line reports (or tracebacks) for composition errors. ``guard`` checks
group choices before Hydra starts (so it can suggest close names), then runs the Hydra entry point
with ``HYDRA_FULL_ERROR=1`` so errors propagate here, where known kinds are turned into one line.
Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import difflib
import functools
import logging
import os
import re
import sys
from collections.abc import Callable
from dataclasses import fields, is_dataclass
from typing import Any, NoReturn, get_type_hints

from olmotrain import schema
from olmotrain.config import CONFIG_DIR, GROUPS, group_options
from olmotrain.errors import UserError

EXIT_USER_ERROR = 2


def fail(message: str) -> NoReturn:
    """Print ``error: message`` on stderr and exit 2."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(EXIT_USER_ERROR)


def setup_logging() -> None:
    """Logs go to stderr (stdout carries only the plan or the final report)."""
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        datefmt="%H:%M:%S",
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # An optional NVIDIA library olmo-core probes for at import; its absence is not news.
    logging.getLogger("olmo_core.nn.attention.te_attn_api").setLevel(logging.ERROR)


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


def _schema_keys(cls: Any = schema.RunSchema, prefix: str = "") -> list[str]:
    keys = []
    hints = get_type_hints(cls)
    for f in fields(cls):
        key = f"{prefix}{f.name}"
        keys.append(key)
        if is_dataclass(hints[f.name]):
            keys += _schema_keys(hints[f.name], f"{key}.")
    return keys


def check_known_keys(cfg: Any) -> None:
    """Reject keys the schema does not know (``+key=value`` slips past Hydra's struct check)."""
    keys = set(_schema_keys())
    for key in cfg:
        if key not in keys:
            raise UserError(f"unknown config key '{key}'; {_suggest_key(str(key))}")
    for section in ("train", "cluster", "parallel", "schedule", "tokenizer", "model", "wandb"):
        for key in cfg.get(section) or {}:
            if f"{section}.{key}" not in keys:
                raise UserError(
                    f"unknown config key '{section}.{key}'; {_suggest_key(f'{section}.{key}')}"
                )


def _suggest_key(key: str) -> str:
    keys = [k for k in _schema_keys() if not k.startswith("derived.")]
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
    return "see the config reference in README.md"


def explain(exc: BaseException) -> str | None:
    """One line for a known user-caused error (walking its causes), else ``None``."""
    chain: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and seen not in chain:
        if isinstance(seen, UserError):
            return str(seen)
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    text = "\n".join(str(e) for e in chain)
    full_key = re.search(r"full_key: (\S+)", text)
    key = full_key.group(1) if full_key else None
    if m := re.search(r"Could not override '([^']+)'", text) or re.search(
        r"Key '([^']+)' is not in struct", text
    ):
        key = m.group(1) if "." in m.group(1) or not key else key
        return f"unknown config key '{key}'; {_suggest_key(key)}"
    if m := re.search(r"Value '([^']*)' of type '\w+' could not be converted to (\w+)", text):
        return f"{key or 'a value'}='{m.group(1)}' is not a valid {m.group(2).lower()}"
    if m := re.search(r"Could not find '([^']+)'", text):
        return f"config '{m.group(1)}' not found (configs live in conf/)"
    if type(exc).__name__ == "OverrideParseException":
        return f"could not parse an override ({text.strip().splitlines()[0]}); write key=value"
    known = (
        "OverrideParseException",
        "ConfigCompositionException",
        "MissingMandatoryValue",
        "ValidationError",
        "InterpolationResolutionError",
        "ConfigKeyError",
    )
    if any(type(e).__name__ in known for e in chain):
        return text.strip().splitlines()[0]
    return None


def user_errors(task: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a Hydra task function so user errors exit with one line inside the job.

    (Outside it, Hydra would first print "Error executing job with overrides: ...".)
    """

    @functools.wraps(task)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return task(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - only known kinds are translated
            message = explain(exc)
            if message is None:
                raise
            fail(message)

    return wrapper


def guard(entry: Callable[[], Any]) -> None:
    """Run a Hydra entry point; user errors end as one line and exit 2."""
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        check_group_choices(sys.argv[1:])
        entry()
    except SystemExit:
        raise
    except KeyboardInterrupt:
        fail("interrupted")
    except Exception as exc:  # noqa: BLE001 - only known kinds are translated, the rest re-raised
        message = explain(exc)
        if message is None:
            raise
        fail(message)
