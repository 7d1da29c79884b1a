"""olmotrain: train an OLMo model with olmo-core, configured by Hydra.

    python train.py                                   # the embedded CPU default, end to end
    python train.py model=olmo2_30m schedule=wsds chinchilla_multiple=4 dry_run=true
    python train.py -m model=olmo2_1m,olmo2_14m       # a sweep

Compose (Hydra) -> resolve the plan once (Chinchilla resolvers) -> check the run dir and data ->
build olmo-core pieces and train -> report held-out loss and where the checkpoint is.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import hydra
from omegaconf import DictConfig

from olmotrain.cli import check_known_keys, dry_run_mode, guard, setup_logging, user_errors
from olmotrain.plan import Plan, build_plan, render_table, resolved_container

if TYPE_CHECKING:
    from olmotrain.rundir import RunDir
    from olmotrain.training import TrainResult


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
@user_errors
def main(cfg: DictConfig) -> None:
    setup_logging()
    check_known_keys(cfg)
    mode = dry_run_mode(cfg.dry_run)

    # 1. The plan, from the config alone (the resolvers run once, here).
    config = resolved_container(cfg)
    plan = build_plan(config)
    if mode == "json":
        print(plan.to_json())
        return
    if mode == "table":
        print(render_table(plan))
        return

    # 2. Devices, data, run dir (resume it, refuse a different run, or report a finished one).
    from olmotrain.data import ensure_data, heldout_baseline
    from olmotrain.launch import run_local_ranks
    from olmotrain.parallel import attention_backend, check_devices, check_parallel, device_type
    from olmotrain.rundir import RunDir
    from olmotrain.training import TrainResult, train

    device, devices = device_type(config["cluster"]), check_devices(config["cluster"])
    attention_backend(config["model"]["attn_backend"], device)
    check_parallel(config["parallel"], devices, device)
    data = ensure_data(config, plan.duration_tokens)
    run = RunDir(Path(plan.run_dir))
    run.claim(config, fresh=cfg.fresh)
    if (step := run.latest_step()) is not None and step >= plan.max_steps:
        print(
            f"olmotrain: {plan.run_name} already finished at step {step}/{plan.max_steps}; "
            f"checkpoint {run.checkpoints / f'step{step}'} (use another run_name to train again)"
        )
        return
    print(render_table(plan), file=sys.stderr)

    # 3. Train with olmo-core: in this process, or one process per local device.
    if devices > 1:
        run_local_ranks(run.path, devices, device)
    else:
        train(config, plan, run)
    result = TrainResult.from_run(run)

    # 4. What a person wants to know at the end.
    print_summary(plan, run, result, heldout_baseline(config, data))


def print_summary(
    plan: Plan, run: RunDir, result: TrainResult, baseline: tuple[float, dict[str, int]] | None
) -> None:
    """Final losses, the held-out loss against the unigram baseline, and where things are."""
    from olmotrain.data import pooled_eval_loss

    print(f"\nolmotrain: {plan.run_name} finished at step {result.final_step}/{plan.max_steps}")
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


if __name__ == "__main__":
    guard(main)
