"""Text -> olmo-core token files: read, tokenize, split train/eval, shard, manifest; resumable.

The parts, each one idea: :mod:`.readers` (input formats), :mod:`.tokenize` (batches on worker
processes), :mod:`.shards` (published shards and their resume records), :mod:`.output` (the
output directory: lock, other tokenizers' data, resuming), :mod:`.manifest` (the format),
:mod:`.build` (the run) and :mod:`.progress`. The command is :mod:`olmotrain.prepare`.
"""

from olmotrain.data.prepare.build import Options, prepare, prepare_files
from olmotrain.data.prepare.manifest import (
    MANIFEST_NAME,
    SPLITS,
    STATE_DIR,
    format_data_config,
    format_summary,
    load_manifest,
    split_of,
)
from olmotrain.data.prepare.progress import Progress
from olmotrain.data.prepare.readers import expand_inputs, read_documents

__all__ = [
    "MANIFEST_NAME",
    "SPLITS",
    "STATE_DIR",
    "Options",
    "Progress",
    "expand_inputs",
    "format_data_config",
    "format_summary",
    "load_manifest",
    "prepare",
    "prepare_files",
    "read_documents",
    "split_of",
]
