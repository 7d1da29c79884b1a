"""Models out: Hugging Face export with a built-in parity check (``python -m olmotrain.export``)."""
