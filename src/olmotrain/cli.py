"""The process-level guard of ``train.py``: bad input becomes one line on stderr and exit 2.

Hydra normally prints multi-line reports (or tracebacks) for composition errors. :func:`guard`
checks group choices before Hydra starts (so it can suggest close names), then runs the Hydra
entry point with ``HYDRA_FULL_ERROR=1`` so errors propagate here, where known kinds (user
errors, filesystem errors, Hydra's and OmegaConf's own) become one line. Anything else is a bug
and keeps its traceback. The checks and the explanations live in :mod:`olmotrain.config.checks`.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any

from olmotrain.config.checks import check_group_choices, explain
from olmotrain.errors import EXIT_INTERRUPTED, fail


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
