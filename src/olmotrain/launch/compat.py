"""Every private or undocumented API of Hydra, hydra-submitit-launcher and submitit we rely on.

One shim each, named for what olmotrain needs, saying what it relies on and the version it was
checked against: hydra-core 1.3.8, hydra-submitit-launcher 1.2.0, submitit 1.5.4.
``tests/test_compat.py`` checks each against the installed library, so an upgrade that changes
one fails there, by name, rather than in a cluster job. Imports stay light: Hydra imports this
module (through ``hydra_plugins.olmotrain_launchers``) at every start; submitit is imported only
by the shims that need it.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any

# Hydra's basic launcher lives in ``hydra._internal``; Hydra offers no public base class for a
# launcher that runs points in-process. We subclass it and rely on: a constructor without
# arguments, ``setup()`` storing ``config`` and ``hydra_context`` on the instance, and
# ``launch(job_overrides, initial_job_idx)`` running each point in this process.
from hydra._internal.core_plugins.basic_launcher import BasicLauncher as HydraBasicLauncher

__all__ = [
    "HydraBasicLauncher",
    "launcher_params",
    "load_sweep_config",
    "requeue_handler",
    "sbatch_preview",
    "submitit_executor",
    "submitit_queue_keys",
]

REQUEUE_SIGNAL = signal.SIGUSR2
"""The signal submitit's job entry point turns into checkpoint-and-requeue (its default,
``SUBMITIT_PREEMPT_SIGNAL`` unset), and the one SLURM sends before the time limit."""


def load_sweep_config(launcher: Any, overrides: Sequence[str]) -> Any:
    """A sweep point's full config (``hydra`` node included), composed as Hydra composes a job.

    Relies on: a launcher's ``hydra_context.config_loader.load_sweep_config(config, overrides)``
    (set by ``Launcher.setup``; what Hydra's own launchers call).
    """
    return launcher.hydra_context.config_loader.load_sweep_config(launcher.config, list(overrides))


def submitit_executor(launcher: Any) -> str:
    """``"slurm"`` or ``"local"``: the submitit executor a hydra-submitit-launcher launcher uses.

    Relies on: the private class attribute ``BaseSubmititLauncher._EXECUTOR``.
    """
    return launcher._EXECUTOR


def launcher_params(launcher: Any) -> dict[str, Any]:
    """The ``hydra.launcher.*`` settings of a hydra-submitit-launcher launcher, as plain values.

    Relies on: ``BaseSubmititLauncher.__init__`` keeping them, containers resolved, in ``params``.
    """
    return launcher.params


def submitit_queue_keys() -> set[str]:
    """The ``hydra.launcher`` keys every submitit executor takes without a ``slurm_``/``local_``
    prefix (``timeout_min``, ``nodes``, ...).

    Relies on: the dataclass ``hydra_plugins.hydra_submitit_launcher.config.BaseQueueConf``,
    whose fields hydra-submitit-launcher passes unprefixed.
    """
    from dataclasses import fields

    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

    return {f.name for f in fields(BaseQueueConf)}


def sbatch_preview(executor: Any) -> str:
    """The sbatch script a ``submitit.AutoExecutor(cluster="slurm")`` would submit now.

    submitit has no public preview. Relies on: ``AutoExecutor._executor`` (the SLURM executor),
    its ``_submitit_command_str`` property and ``_make_submission_file_text(command, uid)``.
    """
    inner = executor._executor
    return inner._make_submission_file_text(inner._submitit_command_str, "preview")


def requeue_handler() -> Callable[[int, FrameType | None], Any] | None:
    """The handler submitit's job entry point installed for :data:`REQUEUE_SIGNAL` (``None``
    outside a submitit job). Called as ``handler(REQUEUE_SIGNAL, None)`` on the job's global
    rank 0, it pickles the job's ``checkpoint()``, requeues the job and exits the process.

    Relies on: ``JobEnvironment._handle_signals`` registering
    ``SignalHandler.checkpoint_and_try_requeue(signum, frame)`` for ``JobEnvironment._usr_sig()``.
    """
    handler = signal.getsignal(REQUEUE_SIGNAL)
    return handler if callable(handler) else None
