"""Data: token files (format and checks), tokenizers, mixes, the embedded dataset, and the
preparation tool that turns text into token files."""
