"""When a run is evaluated besides its permanent checkpoints: the steps of ``eval.final_evals``.

Deciding between data mixes needs the noise of each run's final score, which one evaluation per
run cannot show; a few evaluations spread over the end of the run can (Heineman et al. 2025,
"Signal and Noise": the variability over the last checkpoints). Spreading them over a fraction
of the run, not a fixed number of steps, gives every size of a ladder the same share.
"""

from __future__ import annotations


def final_steps(max_steps: int, count: int | None, span: float) -> list[int]:
    """``count`` steps spread evenly over the last ``span`` of a run of ``max_steps`` steps,
    ending at the last step (fewer when the span has fewer steps); empty for ``count`` None."""
    if not count:
        return []
    first = max(1, max_steps - int(round(span * max_steps)))
    if count == 1 or first == max_steps:
        return [max_steps]
    gap = (max_steps - first) / (count - 1)
    return sorted({max_steps - int(round(i * gap)) for i in range(count)})
