"""A named experiment's swarm as a fit's table, and its proposal with the experiment's settings."""

from __future__ import annotations

from olmotrain.mixture.experiment import Mixture


def swarm_table(mixture: Mixture):
    """The collected swarm as a :class:`MixtureTable` (the largest proxy size's runs)."""
    from olmotrain.mixture.collect import read_collected
    from olmotrain.mixture.tables import from_frames

    frame = read_collected(mixture)
    frame = frame[frame["size"] == mixture.config.proxy.sizes[-1]]
    metrics = [c for c in frame.columns if c.startswith(("eval/", "train/"))]
    return from_frames(
        frame[["run", *mixture.names]], frame[["run", *metrics]], str(mixture.sweep_dir)
    )


def proposal_of(mixture: Mixture):
    """The proposal for the experiment's settings (fits every family, or its ``model``)."""
    from olmotrain.mixture.propose import propose_from_table

    c = mixture.config
    higher = c.higher_is_better
    return propose_from_table(
        swarm_table(mixture),
        c.metric_weights,
        minimize=None if higher is None else not higher,
        model=c.model,
        prior={s: float(w) for s, w in zip(mixture.names, mixture.prior(), strict=True)},
        kl_weight=c.kl_weight,
        available={s.name: int(s.tokens * s.max_source_fraction) for s in mixture.sources},
        target_tokens=mixture.target_tokens,
        max_repetition={s.name: s.max_repetition_ratio for s in mixture.sources},
        fixed=dict(c.swarm.fixed),
        seed=c.swarm.seed,
    )
