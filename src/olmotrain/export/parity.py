"""The export's parity check: the Hugging Face model computes the same function as the checkpoint.

Both models see the same real sequences of the run (full context length) in float32; the
olmo-core model's weights are first rounded to the export's dtype, so the comparison measures
the conversion alone (a bfloat16 export is compared with the bfloat16-rounded checkpoint). Logits
are compared over the real vocabulary (the padding rows of olmo-core's embedding are not exported).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

TOLERANCE = 1e-4
"""Max |delta logit| allowed (float32 arithmetic on both sides)."""


class UnloadableExport(Exception):
    """The converted directory does not load in transformers: parity fails before any logit."""


@dataclass
class Parity:
    """What the parity check measured."""

    sequences: int
    sequence_length: int
    text: str
    """``held-out`` or ``training``: where the sequences came from."""
    tolerance: float
    max_abs_logit_diff: float
    mean_abs_logit_diff: float
    loss_olmo_core: float
    loss_hf: float

    @property
    def passed(self) -> bool:
        return self.max_abs_logit_diff <= self.tolerance

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}


def round_weights(model: Any, dtype: str) -> None:
    """Round ``model``'s float32 weights to ``dtype`` in place (kept as float32)."""
    import torch

    if dtype == "float32":
        return
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(getattr(torch, dtype)).float())


def check_parity(
    native: Any, hf_dir: Path, tokens: np.ndarray, text: str, vocab_size: int, dtype: str
) -> Parity:
    """Compare ``native`` (an olmo-core ``Transformer``) with the HF model in ``hf_dir`` on
    ``tokens`` (``[n, length]``): max and mean |delta logit| and each model's next-token loss."""
    import torch
    import torch.nn.functional as F
    from transformers import AutoModelForCausalLM

    try:
        hf = AutoModelForCausalLM.from_pretrained(
            hf_dir, dtype=torch.float32, local_files_only=True
        ).eval()
    except (RuntimeError, ValueError, OSError) as exc:  # shapes that do not fit the config
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UnloadableExport(first[:300]) from exc
    round_weights(native, dtype)
    max_diff, diff_sum, count = 0.0, 0.0, 0
    losses = {"olmo_core": 0.0, "hf": 0.0}
    with torch.inference_mode():
        for row in tokens:  # one sequence at a time: full-context logits are large
            ids = torch.from_numpy(np.asarray(row, dtype=np.int64))[None]
            a = native(ids)[..., :vocab_size].float()
            b = hf(input_ids=ids).logits[..., :vocab_size].float()
            diff = (a - b).abs()
            max_diff = max(max_diff, float(diff.max()))
            diff_sum += float(diff.sum())
            count += diff.numel()
            for name, logits in (("olmo_core", a), ("hf", b)):
                losses[name] += float(F.cross_entropy(logits[0, :-1], ids[0, 1:]))
    n = len(tokens)
    return Parity(
        sequences=n,
        sequence_length=int(tokens.shape[1]),
        text=text,
        tolerance=TOLERANCE,
        max_abs_logit_diff=max_diff,
        mean_abs_logit_diff=diff_sum / max(count, 1),
        loss_olmo_core=losses["olmo_core"] / n,
        loss_hf=losses["hf"] / n,
    )
