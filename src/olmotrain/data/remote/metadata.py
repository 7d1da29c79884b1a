"""Document metadata beside token files: ``part-N.csv.gz`` next to ``part-N.npy``, as dolma writes.

olmo-core finds the documents of a local token file by scanning it for EOS, but of a remote one
only from this file (one ``start,end`` line per document): a mixture of remote files needs it.
olmotrain's prepare writes it beside every token file it makes, and ``python -m olmotrain.data
index`` writes it for token files that lack it, local or remote (a remote file is read once,
and its metadata uploaded beside it). The boundaries are olmo-core's own
(``olmo_core.data.utils.write_document_indices``).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from olmotrain.data.remote import store
from olmotrain.data.remote.localize import metadata_url
from olmotrain.data.tokens import is_remote
from olmotrain.errors import UserError


def write_metadata(path: Path, dtype: np.dtype, eos_token_id: int) -> Path:
    """Write ``path``'s ``.csv.gz`` beside it, whole or not at all; returns its path. An
    existing one newer than the token file is kept."""
    from olmo_core.data.utils import write_document_indices

    target = Path(metadata_url(str(path)))
    if target.exists() and target.stat().st_mtime >= path.stat().st_mtime:
        return target
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".index-") as tmp:
        alias = Path(tmp) / path.name  # olmo-core writes beside the path it is given
        os.symlink(path.resolve(), alias)
        written = write_document_indices(alias, dtype=dtype.type, eos_token_id=eos_token_id)
        _zero_gzip_mtime(written)
        os.replace(written, target)
    return target


def _zero_gzip_mtime(path: Path) -> None:
    """Clear the write time in the gzip header (bytes 4-7; the CRC covers the data only), so the
    same token file always gets the same bytes: a resumed prepare matches a fresh one."""
    with path.open("r+b") as f:
        f.seek(4)
        f.write(b"\0\0\0\0")


def index(
    paths: list[str], dtype: np.dtype, eos_token_id: int, overwrite: bool = False
) -> list[str]:
    """Write the metadata of every token file in ``paths`` (files or globs, local or remote)
    that lacks it; returns what was written."""
    from olmotrain.data.tokens import expand

    written = []
    files = expand(paths)
    if not files:
        raise UserError(f"no token files match {' '.join(paths)}")
    for f in files:
        if not f.endswith(".npy"):
            raise UserError(f"{f} is not a .npy token file")
        if is_remote(f):
            meta = metadata_url(f)
            if overwrite or not store.exists(meta):
                _index_remote(f, dtype, eos_token_id)
                written.append(meta)
        elif overwrite or not Path(metadata_url(f)).exists():
            if not Path(f).is_file():
                raise UserError(f"{f} does not exist")
            written.append(str(write_metadata(Path(f), dtype, eos_token_id)))
    return written


def _index_remote(url: str, dtype: np.dtype, eos_token_id: int) -> None:
    f = store.stat(url)
    with tempfile.TemporaryDirectory(prefix="olmotrain-index-") as tmp:
        local = Path(tmp) / url.rsplit("/", 1)[1]
        with local.open("wb") as out:
            for chunk in store.stream(url, 0, f.size):
                out.write(chunk)
        meta = write_metadata(local, dtype, eos_token_id)
        store.upload(meta, metadata_url(url))


def copy_tree_to_store(local: Path, prefix: str) -> list[str]:
    """Upload every file under ``local`` to ``prefix/<relative path>``, skipping those already
    there with the same size; returns the URLs uploaded."""
    uploaded = []
    for path in sorted(p for p in local.rglob("*") if p.is_file() and not p.name.startswith(".")):
        if "/." in f"/{path.relative_to(local)}":
            continue  # prepare's own bookkeeping (.records, temporaries)
        url = f"{prefix.rstrip('/')}/{path.relative_to(local).as_posix()}"
        try:
            if path.name != "manifest.json" and store.stat(url).size == path.stat().st_size:
                continue  # uploaded by an earlier, interrupted run
        except store.MissingObject:
            pass
        store.upload(path, url)
        uploaded.append(url)
    return uploaded
