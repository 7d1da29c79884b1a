"""OmegaConf resolvers (``${olmotrain.*:...}``) that fill ``derived.*`` with the Chinchilla math.

They are thin, typed wrappers over what lives below: :mod:`olmotrain.chinchilla` (the math),
:mod:`olmotrain.model` (parameter counts, device memory), :mod:`olmotrain.data` (shipped files)
and :mod:`olmotrain.config.naming` (sweep names). They are registered when this module is
imported (anything that resolves a config imports it: :func:`resolve`), are module-level
functions, so Hydra can pickle them into submitit jobs, and are never cached: a cache would leak
one sweep job's model size into the next.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from olmotrain import chinchilla
from olmotrain.config.compose import from_dict
from olmotrain.config.naming import sweep_name as name_sweep
from olmotrain.config.schema import ModelSchema, RunConfig
from olmotrain.data.tokenizer import package_resource
from olmotrain.errors import UserError
from olmotrain.model.build import transformer_config
from olmotrain.model.parallel import max_micro_batch_tokens as for_device


def _model(model: Any) -> ModelSchema:
    return OmegaConf.to_object(model) if isinstance(model, DictConfig) else model  # type: ignore[return-value]


def num_params(model: Any, tokenizer: Any) -> int:
    """All parameters of the model as configured (embeddings included)."""
    return int(transformer_config(_model(model), tokenizer.vocab_size).num_params)


def num_non_embedding_params(model: Any, tokenizer: Any) -> int:
    """olmo-core's ``num_non_embedding_params``: N in every Chinchilla formula."""
    return int(transformer_config(_model(model), tokenizer.vocab_size).num_non_embedding_params)


def sequence_length(data_sequence_length: int | None) -> int:
    """The data's context when it asks for one, else the plan's fixed 8,192."""
    if data_sequence_length is None:
        return chinchilla.DEFAULT_SEQUENCE_LENGTH
    return int(data_sequence_length)


def target_batch_tokens(n: int, global_batch_size: int | None) -> int:
    """The user's batch when given, else the Chinchilla law's power of two."""
    if global_batch_size is None:
        return chinchilla.target_batch_tokens(n)
    if global_batch_size < 1:
        raise UserError(
            f"train.global_batch_size={global_batch_size} must be a positive number of tokens (or null for the Chinchilla batch)"
        )
    return int(global_batch_size)


def _batch(
    target: int,
    sequence_length: int,
    micro_batch_size: int | None,
    dp_size: int,
    max_micro_tokens: int,
) -> chinchilla.BatchPlan:
    if sequence_length < 1:
        raise UserError(f"train.sequence_length={sequence_length} must be positive")
    if micro_batch_size is not None and micro_batch_size < 1:
        raise UserError(
            f"train.micro_batch_size={micro_batch_size} must be at least 1 sequence (or null for automatic)"
        )
    if dp_size < 1:
        raise UserError(f"cluster.devices={dp_size} must be at least 1")
    return chinchilla.plan_batch(
        target, sequence_length, dp_size, micro_batch_size, max_micro_tokens
    )


def max_micro_batch_tokens(n: int, device: str) -> int:
    """Tokens per rank per forward/backward that the device holds, by model size and memory."""
    return for_device(n, device)


def batch_size_tokens(
    target: int,
    sequence_length: int,
    micro_batch_size: int | None,
    dp_size: int = 1,
    max_micro_tokens: int = 16_384,
) -> int:
    """The batch actually used: whole sequences, divisible by data-parallel x micro-batch."""
    return _batch(target, sequence_length, micro_batch_size, dp_size, max_micro_tokens).tokens


def micro_batch_instances(
    target: int,
    sequence_length: int,
    micro_batch_size: int | None,
    dp_size: int = 1,
    max_micro_tokens: int = 16_384,
) -> int:
    """Sequences per rank per forward/backward pass."""
    return _batch(
        target, sequence_length, micro_batch_size, dp_size, max_micro_tokens
    ).micro_batch_instances


def lr(n: int, lr_multiplier: float, explicit: float | None = None) -> float:
    """Peak learning rate: ``train.lr`` when set, else the law's (times the multiplier)."""
    if lr_multiplier <= 0:
        raise UserError(f"train.lr_multiplier={lr_multiplier} must be > 0")
    if explicit is not None:
        if not explicit > 0:
            raise UserError(f"train.lr={explicit} must be > 0 (or null for the Chinchilla law)")
        return float(explicit) * lr_multiplier
    return float(chinchilla.peak_lr(n, lr_multiplier))


def betas(batch_tokens: int, explicit: Any = None) -> list[float]:
    """AdamW betas: ``train.betas`` when set, else the law's for this batch."""
    if explicit is None:
        return list(chinchilla.betas(batch_tokens))
    values = list(explicit)
    if len(values) != 2 or not all(0 <= float(b) < 1 for b in values):
        raise UserError(
            f"train.betas={values} must be two numbers in [0, 1), e.g. train.betas=[0.9,0.95]"
        )
    return [float(b) for b in values]


def duration_tokens(
    n: int, multiple: float, batch_tokens: int, tokens_per_param: float, max_steps: int | None
) -> int:
    """Training length in tokens (whole batches)."""
    if not multiple > 0:
        raise UserError(
            f"chinchilla_multiple={multiple} must be > 0 (e.g. chinchilla_multiple=1 for Chinchilla-optimal)"
        )
    if not tokens_per_param > 0:
        raise UserError(
            f"train.tokens_per_param={tokens_per_param} must be > 0 (the Chinchilla value is 20)"
        )
    if max_steps is not None and max_steps < 1:
        raise UserError(
            f"train.max_steps={max_steps} must be at least 1 (or null for the Chinchilla duration)"
        )
    return chinchilla.duration_tokens(n, multiple, batch_tokens, tokens_per_param, max_steps)


def steps(duration: int, batch_tokens: int) -> int:
    """Optimizer steps in the run."""
    return duration // batch_tokens


def warmup_tokens(
    n: int,
    duration: int,
    steps: int | None = None,
    tokens: int | None = None,
    batch_tokens: int = 1,
    fraction: float | None = None,
) -> int:
    """Warmup length in tokens: ``train.warmup_steps`` (x batch) or ``train.warmup_tokens`` when
    set, else the schedule's ``warmup_fraction`` of the run (whole steps), else the law's."""
    for key, value in (("warmup_steps", steps), ("warmup_tokens", tokens)):
        if value is not None and value < 0:
            raise UserError(f"train.{key}={value} must be >= 0 (or null for the Chinchilla law)")
    if steps is not None:
        explicit = int(steps) * int(batch_tokens)
    elif tokens is not None:
        explicit = int(tokens)
    elif fraction is not None:
        if not 0 <= fraction < 1:
            raise UserError(f"schedule.warmup_fraction={fraction} must be in [0, 1)")
        return max(1, round(fraction * duration / batch_tokens)) * int(batch_tokens)
    else:
        return chinchilla.warmup_tokens(n, duration)
    if explicit >= duration:
        key = "warmup_steps" if steps is not None else "warmup_tokens"
        raise UserError(
            f"train.{key}: warmup of {explicit:,} tokens is not shorter than the run "
            f"({duration:,} tokens); lower it"
        )
    return explicit


def period_multiples(
    duration: int,
    n: int,
    batch_tokens: int,
    tokens_per_param: float,
    multiple: float,
    max_steps: int | None,
) -> list[float]:
    """Chinchilla multiples at which the WSD-S periods end."""
    final = None if max_steps is not None else float(multiple)
    return chinchilla.period_multiples(duration, n, batch_tokens, tokens_per_param, final)


def period_ends(
    duration: int, multiples: Any, n: int, batch_tokens: int, tokens_per_param: float
) -> list[int]:
    """Token counts at which the WSD-S periods end."""
    return chinchilla.period_ends(duration, list(multiples), n, batch_tokens, tokens_per_param)


def checkpoints(
    ends: Any, multiples: Any, batch_tokens: int, decay_fraction: float
) -> list[dict[str, Any]]:
    """Permanent checkpoints: ``{tokens, step, label}`` at every period's pre-decay point and end."""
    if not 0 < decay_fraction < 0.5:
        raise UserError(f"train.decay_fraction={decay_fraction} must be in (0, 0.5)")
    points = chinchilla.checkpoint_points(list(ends), list(multiples), batch_tokens, decay_fraction)
    return [{"tokens": p.tokens, "step": p.step, "label": p.label} for p in points]


def package_file(package: str, relative: str) -> str:
    """Absolute path of a file shipped inside an installed package (found without importing it)."""
    path = package_resource(package, relative)
    if path is None:
        raise UserError(f"{relative} is not installed with package '{package}'; run `make setup`")
    return str(path)


def world_size(nodes: int, gpus_per_node: int, tasks_per_node: int) -> int:
    """Ranks of a cluster job: one per GPU, or ``tasks_per_node`` CPU ranks, on every node."""
    if nodes < 1:
        raise UserError(f"cluster.nodes={nodes} must be at least 1")
    if gpus_per_node < 0:
        raise UserError(f"cluster.gpus_per_node={gpus_per_node} must be 0 (CPU) or more")
    if tasks_per_node < 1:
        raise UserError(f"cluster.tasks_per_node={tasks_per_node} must be at least 1")
    return nodes * (gpus_per_node or tasks_per_node)


def cluster_device(gpus_per_node: int) -> str:
    """The device of a cluster job's ranks: decided by what it asks for, not by this machine."""
    return "cuda" if gpus_per_node > 0 else "cpu"


def sweep_name(explicit: str | None, task_overrides: Any) -> str:
    """The sweep dir's name (see :func:`olmotrain.config.naming.sweep_name`)."""
    return name_sweep(explicit, [str(o) for o in task_overrides])


RESOLVERS = {
    "num_params": num_params,
    "num_non_embedding_params": num_non_embedding_params,
    "sequence_length": sequence_length,
    "target_batch_tokens": target_batch_tokens,
    "batch_size_tokens": batch_size_tokens,
    "micro_batch_instances": micro_batch_instances,
    "max_micro_batch_tokens": max_micro_batch_tokens,
    "lr": lr,
    "betas": betas,
    "duration_tokens": duration_tokens,
    "steps": steps,
    "warmup_tokens": warmup_tokens,
    "period_multiples": period_multiples,
    "period_ends": period_ends,
    "checkpoints": checkpoints,
    "package_file": package_file,
    "world_size": world_size,
    "cluster_device": cluster_device,
    "sweep_name": sweep_name,
}


def register_resolvers() -> None:
    """Register every ``olmotrain.*`` resolver once (safe to call repeatedly)."""
    for name, fn in RESOLVERS.items():
        if not OmegaConf.has_resolver(f"olmotrain.{name}"):
            OmegaConf.register_new_resolver(f"olmotrain.{name}", fn)


register_resolvers()


def resolve(cfg: DictConfig) -> RunConfig:
    """A composed config with every resolver evaluated once, as the typed run config."""
    return from_dict(OmegaConf.to_container(cfg, resolve=True))  # type: ignore[arg-type]
