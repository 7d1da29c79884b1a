"""olmotrain: train an OLMo model with olmo-core, configured by Hydra.

    python train.py experiment=cpu_demo               # the CPU demo (make train), end to end
    python train.py model=olmo2_30m schedule=wsds chinchilla_multiple=4 dry_run=true
    python train.py -m model=olmo2_1m,olmo2_14m       # a sweep

Compose (Hydra) -> derive the plan once (the Chinchilla math) -> check the run dir and data ->
build olmo-core pieces and train -> report held-out loss and where the checkpoint is.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import hydra
from omegaconf import DictConfig

from olmotrain.config.checks import check_group_choices, explain
from olmotrain.console import setup_logging
from olmotrain.errors import run_hydra, user_errors
from olmotrain.plan import Plan
from olmotrain.plan.render import render_table
from olmotrain.train.startup import check_run, plan_run, print_plan, start_drawer

if TYPE_CHECKING:
    from olmotrain.train.rundir import RunDir
    from olmotrain.train.trainer import TrainResult


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
@user_errors(explain)
def main(cfg: DictConfig) -> None:
    setup_logging()

    # 1. The plan, from the config alone (derived once, here; saved as RUN_DIR/plan.json).
    drawer = start_drawer(cfg)  # a dry run's LR picture, drawn beside olmo-core's import
    config, plan, mode = plan_run(cfg)
    if mode is not None:
        print_plan(config, plan, mode, drawer=drawer)
        return

    # 2. Devices, data, run dir (resume it, refuse a different run, or report a finished one).
    from olmotrain.data.mix import heldout_baseline
    from olmotrain.launch.local import run_local_ranks
    from olmotrain.model.parallel import device_type
    from olmotrain.train.trainer import TrainResult, train

    start = check_run(config, plan, local=True)
    if start.finished_step is not None:
        print(start.finished_message())
        return
    run = start.run
    lock = run.claim(config, plan, fresh=config.fresh)  # one writer per run dir: refused if held
    run.record_data_files(start.data.file_sha256)
    print(render_table(plan), file=sys.stderr)

    # 3. Train with olmo-core: in this process, or one process per local device.
    try:
        if config.cluster.devices > 1:
            run_local_ranks(run.path, config.cluster.devices, device_type(config.cluster.device))
        else:
            train(config, plan, run)
    finally:
        lock.release()
    result = TrainResult.from_run(run)

    # 4. What a person wants to know at the end.
    print_summary(plan, run, result, heldout_baseline(config, start.data.report))


def print_summary(
    plan: Plan, run: RunDir, result: TrainResult, baseline: tuple[float, dict[str, int]] | None
) -> None:
    """Final losses, the held-out loss against the unigram baseline, and where things are."""
    from olmotrain.data.mix import pooled_eval_loss

    print(f"olmotrain: {plan.run_name} finished at step {result.final_step}/{plan.max_steps}")
    if result.train_loss is not None:
        print(f"  train loss       {result.train_loss:.3f} nats")
    if baseline and result.eval_losses:
        entropy, targets = baseline
        held_out = pooled_eval_loss(result.eval_losses, targets)
        per_source = ", ".join(f"{k} {v:.3f}" for k, v in sorted(result.eval_losses.items()))
        gap = entropy - held_out
        print(
            f"  held-out loss    {held_out:.3f} nats ({per_source}; {sum(targets.values()):,} tokens)"
        )
        print(
            f"  unigram entropy  {entropy:.3f} nats of the same held-out tokens: the model is "
            f"{abs(gap):.2f} nats {'better' if gap >= 0 else 'worse'}"
        )
    if total := sum(result.source_tokens.values()):
        shares = ", ".join(
            f"{k} {v:,} ({v / total:.1%})" for k, v in sorted(result.source_tokens.items())
        )
        print(f"  tokens by source {shares}")
    print(f"  checkpoint       {result.checkpoint}")
    print(f"  metrics          {run.metrics_path}")
    if result.samples:
        print(f"  samples at step {result.samples_step} (greedy):")
        for s in result.samples:
            print(f"    {s['prompt']!r} -> {s['completion']!r}")


if __name__ == "__main__":
    run_hydra(main, explain, check_group_choices)
