"""Autoregressive sampling from an olmo-core ``Transformer``, one token at a time.

olmo-core's ``generate_batch`` returns whole sequences; training samples (``train.sample_prompts``)
and the generator's native engine want tokens as they come, from a model that may be FSDP-sharded
across ranks (every rank runs the same steps). Token selection is olmo-core's own
``select_next_token`` (greedy, temperature, top-k, top-p). PyTorch attention has no KV cache in
olmo-core, so each step re-reads the prefix: fine for samples, slow for long generations (the
generator prefers transformers' cached decoding where the model converts).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any


@dataclass
class Sampling:
    """How to pick tokens; ``temperature`` 0 is greedy."""

    max_new_tokens: int = 64
    temperature: float = 0.0
    top_k: int = -1
    top_p: float = 1.0
    seed: int | None = None


def sample_tokens(
    model: Any, prompt: list[int], sampling: Sampling, vocab_size: int, eos_id: int | None = None
) -> Iterator[int]:
    """New token ids after ``prompt``, as they are chosen, until ``max_new_tokens`` or EOS (which
    is yielded). Leaves the global RNG as it was (training goes on unchanged)."""
    import torch
    from olmo_core.generate.sampling import select_next_token

    device = next(model.parameters()).device
    ids = torch.tensor([prompt], dtype=torch.long, device=device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        if sampling.seed is not None:
            torch.manual_seed(sampling.seed)
        with torch.inference_mode():
            for _ in range(sampling.max_new_tokens):
                logits = model(ids, logits_to_keep=1)[:, -1, :vocab_size].float()
                token = select_next_token(
                    logits,
                    do_sample=sampling.temperature > 0,
                    temperature=sampling.temperature,
                    top_k=sampling.top_k,
                    top_p=sampling.top_p,
                )
                value = int(token[0])
                yield value
                if value == eos_id:
                    return
                ids = torch.cat([ids, token.view(1, 1).to(ids.dtype)], dim=1)
