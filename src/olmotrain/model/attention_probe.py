"""Which kernel PyTorch's scaled-dot-product attention picks for a run's shapes.

olmo-core's default attention backend is SDPA, which dispatches to one of several kernels (on
torch 2.11 at sm90 it prefers cuDNN attention). The choice decides the speed, so the GPU check
reports it: the kernel torch's own dispatcher (``torch._fused_sdp_choice``) chooses for a causal
bf16 attention of the model's head size.
"""

from __future__ import annotations

KERNELS = {
    "FLASH_ATTENTION": "flash",
    "EFFICIENT_ATTENTION": "efficient",
    "CUDNN_ATTENTION": "cudnn",
    "MATH": "math",
    "OVERRIDEABLE": "overrideable",
}


def sdpa_kernel(device: str, head_dim: int, heads: int = 8, seq: int = 256) -> str:
    """``flash`` | ``efficient`` | ``cudnn`` | ``math``: SDPA's kernel for these shapes on
    ``device`` (bf16 on CUDA, fp32 elsewhere), as torch's dispatcher chooses it."""
    import torch
    from torch.nn.attention import SDPBackend

    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    q = torch.randn(1, heads, seq, head_dim, device=device, dtype=dtype)
    choice = SDPBackend(torch._fused_sdp_choice(q, q, q, None, 0.0, True))
    return KERNELS.get(choice.name, choice.name.lower())
