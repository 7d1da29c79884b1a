"""What a mix asks of each source: its ratios checked, the tokens each must supply over a run,
and the repetition that implies against what the source holds and may repeat.

A natural mix (no ratios) takes every source in proportion to what it holds; a ratio mix takes
``duration * ratio`` tokens of each. A source fits when the requested tokens over its usable
tokens (``max_source_fraction`` of what it holds) stay within ``max_repetition_ratio``; a
repetition-matched proxy run (``data.proxy_for_tokens``) scales each source's usable share by its
length relative to the larger run, so that the small run repeats its data as the large one will.
"""

from __future__ import annotations

import difflib
from dataclasses import replace
from typing import Any

from olmotrain.config.schema import DataSchema, SourceSchema
from olmotrain.errors import UserError

RATIO_TOLERANCE = 1e-6
"""How far from 1 the ratios may add up (floating-point sums of shares like 0.1)."""


def mixed_sources(data: DataSchema, duration_tokens: int | None = None) -> list[SourceSchema]:
    """The sources as the run mixes them: ``data.ratios`` in place of their ratios and, for a
    repetition-matched proxy (``data.proxy_for_tokens``, with ``duration_tokens``), each
    source's ``max_source_fraction`` scaled by this run's share of the larger run."""
    sources = list(data.sources)
    if data.ratios is not None:
        sources = _with_ratios(data, sources)
    proxy = data.proxy_for_tokens
    if proxy is not None:
        if not proxy > 0:
            raise UserError(f"data.proxy_for_tokens={proxy} must be a positive number of tokens")
        if any(s.ratio is None for s in sources):
            raise UserError(
                f"data '{data.name}': data.proxy_for_tokens needs a ratio per source "
                "(data.ratios={...} or sources[].ratio); a natural mix repeats every source alike"
            )
        if duration_tokens is not None:
            share = min(1.0, duration_tokens / proxy)
            sources = [
                replace(s, max_source_fraction=s.max_source_fraction * share) for s in sources
            ]
    return sources


def _with_ratios(data: DataSchema, sources: list[SourceSchema]) -> list[SourceSchema]:
    given = data.ratios
    names = [s.name for s in sources]
    if not isinstance(given, dict) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in given.values()
    ):
        raise UserError(
            f"data.ratios={given} must map every source to a number, e.g. "
            f"data.ratios={{{', '.join(f'{n}: {1 / len(names):.2g}' for n in names)}}}"
        )
    for key in given:
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f"did you mean {close[0]}?" if close else f"its sources are {', '.join(names)}"
            raise UserError(f"data.ratios: '{key}' is not a source of data '{data.name}'; {hint}")
    missing = [n for n in names if n not in given]
    if missing:
        raise UserError(
            f"data.ratios gives no ratio for {', '.join(missing)}; give every source of data "
            f"'{data.name}' a ratio ({', '.join(names)})"
        )
    return [replace(s, ratio=float(given[s.name])) for s in sources]


def mix_plan(data: DataSchema, tokens: list[int | None], duration: int) -> list[dict[str, Any]]:
    """Per source: ratio, requested tokens, implied repetition, and whether it fits its limits;
    ``tokens``: what each source holds (``None``: not known, e.g. a store out of reach).

    In a natural mix each source's share is what it holds, so a run longer than the data repeats
    every source alike; ``max_repetition_ratio`` bounds that too.
    """
    sources = mixed_sources(data, duration)
    ratios = [s.ratio for s in sources]
    if any(r is None for r in ratios) and any(r is not None for r in ratios):
        missing = ", ".join(s.name for s in sources if s.ratio is None)
        raise UserError(
            f"data '{data.name}': give every source a ratio, or none (natural mix); missing: {missing}"
        )
    natural = not ratios or ratios[0] is None
    if not natural:
        if any(r < 0 for r in ratios):
            listed = ", ".join(f"{s.name}={s.ratio}" for s in sources)
            raise UserError(f"data '{data.name}': ratios must be >= 0 (got {listed})")
        total = sum(ratios)
        if abs(total - 1) > RATIO_TOLERANCE:
            listed = " + ".join(f"{s.name} {s.ratio:g}" for s in sources)
            raise UserError(
                f"data '{data.name}': source ratios add up to {total:g} ({listed}), not 1; fix data.sources[].ratio"
            )
    else:
        known = list(tokens)
        total = sum(known) if all(k is not None for k in known) else None
        ratios = [k / total if total else None for k in known]
    plans = []
    for source, held, ratio in zip(sources, tokens, ratios, strict=True):
        for key in ("max_repetition_ratio", "max_source_fraction"):
            if not getattr(source, key) > 0:
                raise UserError(
                    f"data source {source.name}: {key}={getattr(source, key)} must be > 0"
                )
        entry: dict[str, Any] = {
            "ratio": ratio,
            "requested_tokens": None,
            "repetition": None,
            "fits": None,
        }
        if ratio is not None:
            entry["requested_tokens"] = int(duration * ratio)
        if ratio is not None and held:
            usable = held * source.max_source_fraction
            entry["repetition"] = entry["requested_tokens"] / usable
            entry["fits"] = entry["repetition"] <= source.max_repetition_ratio
            if not entry["fits"]:
                fix = (
                    "shorten the run (chinchilla_multiple or train.max_steps), add data, or raise its max_repetition_ratio"
                    if natural
                    else "raise max_repetition_ratio, lower its ratio, or shorten the run"
                )
                entry["fit_problem"] = (
                    f"needs {entry['requested_tokens']:,} tokens but has {int(usable):,} usable, a repetition of "
                    f"{entry['repetition']:.2f}x above its max_repetition_ratio {source.max_repetition_ratio:g}; {fix}"
                )
        plans.append(entry)
    return plans
