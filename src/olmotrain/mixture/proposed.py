"""The proposal as a data config that ``train.py`` trains as is: ``conf/data/<name>_proposed.yaml``.

Same sources, files, held-out sets and limits as the mixed data config (its ``defaults``), the
proposed ratios in place of its own; a header says where the numbers came from.
"""

from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np
import yaml
from omegaconf import OmegaConf

from olmotrain.config.compose import CONFIG_DIR, compose
from olmotrain.mixture.experiment import Mixture
from olmotrain.paths import write_atomically


def write_proposed_data(mixture: Mixture, weights: dict[str, float], why: str = "") -> Path:
    """Write the proposal's data config (``why``: a line on where it comes from, for its
    header); returns its path."""
    c = mixture.config
    cons = mixture.constraints(mixture.target_tokens, "the target")
    mix = mixture.feasible(np.array([weights[n] for n in mixture.names]), cons)
    cfg = compose([f"data={c.data}"])
    sources = OmegaConf.to_container(cfg.data.sources, resolve=False)
    for source in sources:  # type: ignore[union-attr]
        source["ratio"] = mix[source["name"]]  # type: ignore[index]
    body = yaml.safe_dump(
        {
            "defaults": [c.data, "_self_"],
            "name": c.proposed_data_name,
            "ratios": None,
            "proxy_for_tokens": None,
            "sources": sources,
        },
        sort_keys=False,
    )
    header = (
        f"# Proposed by `python -m olmotrain.mixture propose {c.name}` on "
        f"{datetime.date.today()}: the mix of {c.data}'s sources for {c.target.size} at "
        f"{c.target.chinchilla_multiple:g} x Chinchilla\n# ({mixture.target_tokens:,} tokens). "
        f"Train it: python train.py model={c.target.size} data={c.proposed_data_name} "
        f"chinchilla_multiple={c.target.chinchilla_multiple:g}\n" + (f"# {why}\n" if why else "")
    )
    path = CONFIG_DIR / "data" / f"{c.proposed_data_name}.yaml"
    write_atomically(path, header + body)
    return path
