"""Each shim of :mod:`olmotrain.launch.compat` against the installed Hydra, hydra-submitit-launcher
and submitit: a failure here names the private API that changed under olmotrain."""

from __future__ import annotations

import inspect
import signal

import pytest
from omegaconf import OmegaConf

from hydra_plugins.olmotrain_launchers.launchers import (
    BasicLauncher,
    SlurmLauncher,
    SubmititLocalLauncher,
)
from olmotrain.launch import compat


def test_hydra_basic_launcher_is_the_in_process_launcher_we_subclass():
    from hydra.plugins.launcher import Launcher

    assert issubclass(compat.HydraBasicLauncher, Launcher)
    assert issubclass(BasicLauncher, compat.HydraBasicLauncher)
    assert list(inspect.signature(compat.HydraBasicLauncher.launch).parameters) == [
        "self",
        "job_overrides",
        "initial_job_idx",
    ]
    launcher = BasicLauncher()  # no arguments
    config = OmegaConf.create({"a": 1})
    launcher.setup(hydra_context="context", task_function=print, config=config)
    assert launcher.config is config and launcher.hydra_context == "context"


def test_load_sweep_config_composes_a_point_with_its_hydra_node(tmp_path):
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra._internal.utils import create_config_search_path
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import HydraContext, RunMode

    (tmp_path / "config.yaml").write_text("seed: 1\nname: x\n")
    loader = ConfigLoaderImpl(config_search_path=create_config_search_path(str(tmp_path)))
    config = loader.load_configuration("config", overrides=["seed=1,2"], run_mode=RunMode.MULTIRUN)
    launcher = BasicLauncher()
    context = HydraContext(config_loader=loader, callbacks=None)
    launcher.setup(hydra_context=context, task_function=print, config=config)
    try:
        point = compat.load_sweep_config(launcher, ("seed=2",))
    finally:
        GlobalHydra.instance().clear()
    assert point.seed == 2 and point.name == "x"
    assert point.hydra.overrides.task == ["seed=2"]


def test_submitit_executor_names_the_submitit_cluster():
    assert compat.submitit_executor(SlurmLauncher()) == "slurm"
    assert compat.submitit_executor(SubmititLocalLauncher()) == "local"


def test_launcher_params_are_the_hydra_launcher_settings_as_plain_values():
    extra = OmegaConf.create({"requeue": True})
    params = compat.launcher_params(
        SubmititLocalLauncher(timeout_min=5, additional_parameters=extra)
    )
    assert params == {"timeout_min": 5, "additional_parameters": {"requeue": True}}
    assert type(params["additional_parameters"]) is dict


def test_submitit_queue_keys_are_what_every_executor_takes_unprefixed():
    keys = compat.submitit_queue_keys()
    assert {"timeout_min", "nodes", "tasks_per_node", "cpus_per_task", "mem_gb", "name"} <= keys
    assert {"gpus_per_node", "submitit_folder"} <= keys
    assert "partition" not in keys  # SLURM's own: slurm_partition


def test_sbatch_preview_is_the_script_submitit_would_submit(tmp_path, monkeypatch):
    import submitit

    # The SLURM executor refuses to exist without srun on PATH; it never runs it here.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 1\n")
    (bin_dir / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{__import__('os').environ['PATH']}")
    ex = submitit.AutoExecutor(folder=tmp_path / "%j", cluster="slurm")
    ex.update_parameters(timeout_min=7, slurm_partition="debug", name="olmo")
    script = compat.sbatch_preview(ex)
    assert script.startswith("#!/bin/bash")
    assert "#SBATCH --partition=debug" in script and "#SBATCH --time=7" in script
    assert "#SBATCH --job-name=olmo" in script and "submitit" in script


def test_requeue_handler_is_what_submitit_installs_in_a_job():
    from submitit.core.job_environment import JobEnvironment, SignalHandler
    from submitit.slurm.slurm import SlurmJobEnvironment

    assert JobEnvironment._usr_sig() == compat.REQUEUE_SIGNAL  # SUBMITIT_PREEMPT_SIGNAL unset
    from submitit.core import submission

    assert "env._handle_signals(paths, delayed)" in inspect.getsource(submission.process_job)
    params = list(inspect.signature(SignalHandler.checkpoint_and_try_requeue).parameters)
    assert params == ["self", "signum", "frame"]
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGCONT, signal.SIGUSR2)}
    try:
        signal.signal(compat.REQUEUE_SIGNAL, signal.SIG_DFL)
        assert compat.requeue_handler() is None  # outside a submitit job
        # What submitit's job entry point (submitit.core.submission) does on a SLURM node before
        # it runs the job; paths and the submission are only used once the signal comes.
        env = object.__new__(SlurmJobEnvironment)
        env._handle_signals(paths=None, submission=None)
        handler = compat.requeue_handler()
        assert handler is not None
        assert getattr(handler, "__func__", None) is SignalHandler.checkpoint_and_try_requeue
    finally:
        for sig, old in saved.items():
            signal.signal(sig, old)


@pytest.mark.parametrize(
    "module", ["olmotrain.launch.compat", "hydra_plugins.olmotrain_launchers.launchers"]
)
def test_hydra_start_up_imports_stay_light(module):
    """Hydra imports the launcher plugins at every start: no submitit, no torch."""
    import subprocess
    import sys

    code = f"import sys, {module}; print('submitit' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
