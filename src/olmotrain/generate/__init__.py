"""Text generation from a run, a checkpoint or a Hugging Face directory (``python -m olmotrain.generate``)."""
