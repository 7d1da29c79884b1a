"""olmotrain's Hydra launchers (Hydra loads launchers only from the ``hydra_plugins`` package).

Thin subclasses of Hydra's basic launcher and hydra-submitit-launcher's launchers; the work is in
:mod:`olmotrain.launch.sweep` (run dirs named by the points, resumable sweeps) and :mod:`olmotrain.launch.slurm`
(frozen configs, one job per point, preemption-safe requeue); the private Hydra API they rest on
is in :mod:`olmotrain.launch.compat`. Imports stay light: Hydra imports this module at every start.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hydra_plugins.hydra_submitit_launcher import submitit_launcher

from olmotrain.launch.compat import HydraBasicLauncher


class BasicLauncher(HydraBasicLauncher):
    """Hydra's basic launcher (points run here, one after another) with olmotrain's sweep dirs."""

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Any:
        from olmotrain.launch.sweep import name_points, record_sweep

        assert self.config is not None
        named = name_points(self.config, job_overrides)
        record_sweep(self.config, job_overrides)
        return super().launch(named, initial_job_idx)


class SlurmLauncher(submitit_launcher.SlurmLauncher):
    """hydra-submitit-launcher's SLURM launcher: one job per point, config frozen at submit."""

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Any:
        from olmotrain.launch.slurm import launch

        return launch(self, job_overrides, initial_job_idx)


class SubmititLocalLauncher(submitit_launcher.LocalLauncher):
    """The SLURM path with local subprocesses for jobs (no SLURM needed)."""

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Any:
        from olmotrain.launch.slurm import launch

        return launch(self, job_overrides, initial_job_idx)
