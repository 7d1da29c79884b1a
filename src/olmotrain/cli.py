"""The process-level guard of ``train.py``: bad input becomes one line on stderr and exit 2.

Hydra normally prints multi-line reports (or tracebacks) for composition errors. :func:`guard`
checks group choices before Hydra starts (so it can suggest close names), then runs the Hydra
entry point with ``HYDRA_FULL_ERROR=1`` so errors propagate here, where known kinds (user
errors, filesystem errors, Hydra's and OmegaConf's own) become one line. Anything else is a bug
and keeps its traceback. The checks themselves live in :mod:`olmotrain.config.checks`.
"""

from __future__ import annotations

import functools
import os
import re
import sys
from collections.abc import Callable
from typing import Any

from olmotrain.config.checks import check_group_choices, suggest_key
from olmotrain.errors import EXIT_INTERRUPTED, fail, user_error_line

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


def user_errors(task: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a Hydra task function so user errors exit with one line inside the job.

    (Outside it, Hydra would first print "Error executing job with overrides: ...".)
    """

    @functools.wraps(task)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return task(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - only known kinds are translated
            known = explain(exc)
            if known is None:
                raise
            fail(*known)

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
        fail("interrupted", EXIT_INTERRUPTED)
    except Exception as exc:  # noqa: BLE001 - only known kinds are translated, the rest re-raised
        known = explain(exc)
        if known is None:
            raise
        fail(*known)
