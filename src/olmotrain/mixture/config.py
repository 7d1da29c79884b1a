"""A mixture experiment is a config: which data's sources to mix, the proxy runs of the swarm,
the target run the proposal is for, the metric, and how to verify.

``conf/mixture/<name>.yaml`` (or any YAML path)::

    name: demo
    data: embedded_split            # the data config whose sources are mixed (conf/data/)
    proxy: {sizes: [olmo2_1m], chinchilla_multiple: 0.05}
    target: {size: dd_8m, chinchilla_multiple: 1}
    swarm: {runs: 24, prior: natural, concentration: null, fixed: {}, seed: 0,
            repetition_matched: true}
    metric: {eval/lm/python_library/BPB: 1, eval/lm/english_docs/BPB: 1}   # or one column
    higher_is_better: null          # null: by the metric's name (losses lower)
    model: null                     # the regression: null = the best by cross-validation
    kl_weight: 0                    # olmix's pull toward the prior
    verify: {sizes: [olmo2_1m, dd_4m], chinchilla_multiple: null}
    seeds: [42]
    overrides: ["eval.downstream=[]"]   # train.py overrides for every run
    output_root: runs

Command-line ``key=value`` pairs override it (``swarm.runs=48 proxy.sizes=[dd_4m]``); the keys
that are not the experiment's are ``train.py`` overrides for every run, as for ladders.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from olmotrain.config.experiment_file import find_file, load_typed, split_overrides
from olmotrain.errors import UserError
from olmotrain.ladder.config import check_option, check_tag

MIXTURE_SWEEP_PREFIX = "mixture-"
PRIORS = ("natural", "uniform")


@dataclass
class ProxyConfig:
    """The swarm's runs: model size(s) and length."""

    sizes: list[str] = field(default_factory=list)
    """Model configs (conf/model/); the fit and the proposal use the largest (the last)."""
    chinchilla_multiple: float = 0.05


@dataclass
class TargetConfig:
    """The run the proposal is for: its token count sets every source's repetition cap."""

    size: str = ""
    chinchilla_multiple: float = 1.0


@dataclass
class SwarmConfig:
    """How the swarm's mixes are drawn: Dirichlet(alpha = concentration x prior) over the free
    sources, then made feasible (each source within its repetition cap)."""

    runs: int = 24
    prior: Any = "natural"
    """``natural`` (every source in proportion to its tokens), ``uniform``, or ``{source: w}``."""
    concentration: float | None = None
    """The Dirichlet's total alpha; ``null``: the number of free sources (uniform over the
    simplex for a uniform prior). Larger: mixes closer to the prior."""
    fixed: dict[str, float] = field(default_factory=dict)
    """Sources held at a fixed weight in every mix (and in the proposal)."""
    seed: int = 0
    repetition_matched: bool = True
    """Each source used in a proxy only up to the proxy's share of the target run, so that a
    source the target must repeat is repeated as often in the proxy (``data.proxy_for_tokens``)."""


@dataclass
class VerifyConfig:
    """Proposal vs the prior and the best swarm mix, trained at these sizes."""

    sizes: list[str] = field(default_factory=list)
    """Empty: the largest proxy size and the target size."""
    chinchilla_multiple: float | None = None
    """``null``: the proxy's."""


@dataclass
class MixtureConfig:
    """What a mixture experiment does (see the module docstring)."""

    name: str = "mixture"
    data: str = ""
    proxy: ProxyConfig = field(default_factory=ProxyConfig)
    target: TargetConfig = field(default_factory=TargetConfig)
    swarm: SwarmConfig = field(default_factory=SwarmConfig)
    metric: Any = None
    """One collected column, or ``{column: weight}`` for a weighted average."""
    higher_is_better: bool | None = None
    model: str | None = None
    """The regression family the proposal uses (``null``: the best by cross-validation)."""
    kl_weight: float = 0.0
    verify: VerifyConfig = field(default_factory=VerifyConfig)
    seeds: list[int] = field(default_factory=lambda: [42])
    overrides: list[str] = field(default_factory=list)
    output_root: str = "runs"
    tag: str | None = None

    @property
    def sweep_name(self) -> str:
        tail = f"-{self.tag}" if self.tag else ""
        return f"{MIXTURE_SWEEP_PREFIX}{self.name}{tail}"

    @property
    def sweep_dir(self) -> Path:
        """Where the swarm trains and the experiment's tables, proposal and report go."""
        return Path(self.output_root) / "sweeps" / self.sweep_name

    @property
    def verify_sweep_name(self) -> str:
        return f"{self.sweep_name}-verify"

    @property
    def proposed_data_name(self) -> str:
        """The data config the proposal is written as (``conf/data/<name>_proposed.yaml``)."""
        tail = f"_{self.tag}" if self.tag else ""
        return f"{self.name}{tail}_proposed"

    @property
    def metric_weights(self) -> dict[str, float]:
        """The metric as ``{column: weight}`` (weights summing to 1)."""
        if isinstance(self.metric, str):
            return {self.metric: 1.0}
        total = sum(self.metric.values())
        return {k: float(v) / total for k, v in self.metric.items()}

    @property
    def verify_sizes(self) -> list[str]:
        return list(self.verify.sizes) or [self.proxy.sizes[-1], self.target.size]

    @property
    def verify_multiple(self) -> float:
        return self.verify.chinchilla_multiple or self.proxy.chinchilla_multiple


MIXTURE_SETS = {
    "model": "set proxy.sizes, target.size or verify.sizes",
    "data": "set data: (the data config whose sources are mixed)",
    "seed": "list them under seeds=[...]",
    "chinchilla_multiple": "set proxy.chinchilla_multiple or target.chinchilla_multiple",
    "run_name": "runs are named by their mix; to train them again as a new set, set tag=NAME",
    "sweep_name": "the sweep is mixture-<name>[-<tag>]: set name=... or tag=...",
    "dry_run": "use python -m olmotrain.mixture plan",
}
"""``train.py`` keys the experiment sets per run, which an override must not replace."""


def load_mixture(name_or_path: str, overrides: list[str] | tuple[str, ...] = ()) -> MixtureConfig:
    """A mixture experiment by name (``conf/mixture/``) or YAML path, with overrides, checked."""
    path = find_file(name_or_path, "mixture", "mixture")
    own, train = split_overrides(overrides, MixtureConfig, MIXTURE_SETS, "mixture")
    config = load_typed(path, MixtureConfig, own)
    split_overrides(config.overrides, MixtureConfig, MIXTURE_SETS, "mixture")  # the file's too
    config.overrides = [*config.overrides, *train]
    check_mixture(config)
    return config


def check_mixture(c: MixtureConfig) -> None:
    """One clear error for an experiment that cannot mean anything, before anything runs."""
    owner = f"mixture {c.name}"
    if "/" in c.name or c.name.startswith("."):
        raise UserError(f"mixture name {c.name!r} must be a plain name")
    check_tag(owner, c.tag)
    if not c.data:
        raise UserError(f"{owner}: no data; name the data config whose sources are mixed")
    check_option(owner, "data", "data", c.data)
    if not c.proxy.sizes:
        raise UserError(f"{owner}: no proxy sizes; list model configs under proxy.sizes")
    if not c.target.size:
        raise UserError(f"{owner}: no target size; set target.size (the run the mix is for)")
    for size in [*c.proxy.sizes, c.target.size, *c.verify.sizes]:
        check_option(owner, "size", "model", size)
    for key, value in (
        ("proxy.chinchilla_multiple", c.proxy.chinchilla_multiple),
        ("target.chinchilla_multiple", c.target.chinchilla_multiple),
        ("verify.chinchilla_multiple", c.verify.chinchilla_multiple or 1),
        ("swarm.runs", c.swarm.runs),
        ("swarm.concentration", c.swarm.concentration or 1),
    ):
        if not value > 0:
            raise UserError(f"{owner}: {key}={value} must be > 0")
    if c.kl_weight < 0:
        raise UserError(f"{owner}: kl_weight={c.kl_weight} must be >= 0")
    if not c.seeds:
        raise UserError(f"{owner} has no seeds; e.g. seeds: [42]")
    prior = c.swarm.prior
    if not (prior in PRIORS or isinstance(prior, dict)):
        raise UserError(
            f"{owner}: swarm.prior={prior!r} must be natural, uniform or {{source: weight}}"
        )
    metric = c.metric
    if not (
        (isinstance(metric, str) and metric)
        or (
            isinstance(metric, dict)
            and metric
            and all(isinstance(v, (int, float)) and v > 0 for v in metric.values())
        )
    ):
        raise UserError(
            f"{owner}: metric={metric!r} must be a collected column or {{column: weight > 0}}, "
            "e.g. metric: eval/lm/english_docs/BPB"
        )
