"""The checks a run makes of its token files before it starts (``olmotrain.data.tokens``): the
dtype olmo-core reads them with, which paths are remote, glob expansion, the once-read scan
(max id and digest, cached until the file changes, and said so when it did), the tokenizer a
prepared dataset's manifest names, and ids outside the vocabulary, word for word.

Pure calls on small files in ``tmp_path`` (no training, no subprocess): the command-line view
of the same errors is in test_data_errors.py; these are the fast tests ``make mutation`` runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from olmotrain.config.schema import TokenizerSchema
from olmotrain.data.tokens import (
    check_token_files,
    expand,
    is_remote,
    scan_token_file,
    scored_targets,
    token_dtype,
)
from olmotrain.errors import UserError

TOK = TokenizerSchema(name="bpe8k", vocab_size=8192, eos_token_id=0, pad_token_id=1)


def write(path: Path, ids, dtype=np.uint16) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.asarray(ids, dtype=dtype).tofile(path)
    return str(path)


def manifest(directory: Path, **tokenizer) -> None:
    """An olmotrain-prepared dataset's manifest naming ``tokenizer`` (TOK's fields by default)."""
    tok = {"name": "bpe8k", "vocab_size": 8192, "eos_token_id": 0, **tokenizer}
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "manifest.json").write_text(json.dumps({"tokenizer": tok}))


# --- dtype and paths --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("vocab", "dtype"),
    [(1, np.uint8), (256, np.uint8), (257, np.uint16), (65_536, np.uint16), (65_537, np.uint32),
     (100_352, np.uint32), (2**32, np.uint32), (2**32 + 1, np.uint64), (2**64, np.uint64)],
)  # fmt: skip
def test_the_smallest_unsigned_dtype_holding_every_id(vocab, dtype):
    assert token_dtype(vocab) == np.dtype(dtype)


@pytest.mark.parametrize(
    ("vocab", "message"),
    [(0, "vocabulary size must be positive, got 0"),
     (-5, "vocabulary size must be positive, got -5"),
     (2**64 + 1, f"vocabulary size {2**64 + 1} does not fit in uint64 token files")],
)  # fmt: skip
def test_impossible_vocabularies_are_one_line(vocab, message):
    with pytest.raises(UserError) as e:
        token_dtype(vocab)
    assert str(e.value) == message


@pytest.mark.parametrize(
    "path",
    ["s3://b/k.npy", "gs://b/k", "http://h/x", "https://h/x", "r2://b/k", "weka://b/k"],
)
def test_object_store_and_web_paths_are_remote(path):
    assert is_remote(path)


@pytest.mark.parametrize("path", ["data/tok/a.npy", "/abs/s3://x", "s3:/b/k", "S3://b/k", ""])
def test_local_paths_are_not_remote(path):
    assert not is_remote(path)


def test_local_globs_expand_sorted_once_each_in_pattern_order(tmp_path):
    for name in ("b.npy", "a.npy", "c.txt"):
        (tmp_path / name).write_bytes(b"")
    a, b = str(tmp_path / "a.npy"), str(tmp_path / "b.npy")
    assert expand([str(tmp_path / "*.npy")]) == [a, b]
    assert expand([b, str(tmp_path / "*.npy")]) == [b, a]  # first seen keeps its place
    assert expand([str(tmp_path / "missing*.npy")]) == []
    assert expand([]) == []


def test_a_remote_glob_is_listed_from_its_store(tmp_path, monkeypatch):
    from stores import s3_server

    with s3_server() as s3:
        for name, value in s3.env.items():
            monkeypatch.setenv(name, value)
        for key in ("tok/b.npy", "tok/a.npy", "tok/notes.txt", "other/c.npy"):
            s3.upload(Path(write(tmp_path / "x.npy", [1])), key)
        listed = expand(["s3://corpus/tok/*.npy", "s3://corpus/tok/a.npy"])
    assert listed == ["s3://corpus/tok/a.npy", "s3://corpus/tok/b.npy"]


def test_globs_a_store_cannot_list_are_refused_or_left_to_olmo_core():
    with pytest.raises(UserError) as e:  # no request made: the scheme decides
        expand(["https://127.0.0.1:9/tok/*.npy"])
    assert str(e.value) == (
        "https://127.0.0.1:9/tok/*.npy: https:// paths cannot be listed, so they cannot be "
        "globs; list each file"
    )
    assert expand(["gs://bucket/tok/*.npy"]) == ["gs://bucket/tok/*.npy"]  # olmo-core's alone


def test_a_remote_path_without_wildcards_is_kept_without_listing():
    # a bucket that does not exist anywhere: a listing would fail, so none is made
    paths = ["s3://olmotrain-no-such-bucket/tok/part-0.npy", "https://127.0.0.1:9/a.npy"]
    assert expand(paths) == paths


# --- the scan: max id and digest, read once ---------------------------------------------------


def test_a_scan_gives_the_largest_id_and_the_digest_of_the_bytes(tmp_path):
    path = write(tmp_path / "a.npy", [5, 8191, 0, 7])
    record = scan_token_file(path, np.dtype(np.uint16), tmp_path / "cache")
    assert record["max_token_id"] == 8191
    assert record["sha256"] == hashlib.sha256(Path(path).read_bytes()).hexdigest()
    assert record["path"] == os.path.abspath(path)
    assert "changed" not in record


def test_an_empty_file_has_no_largest_id(tmp_path):
    path = write(tmp_path / "empty.npy", [])
    record = scan_token_file(path, np.dtype(np.uint16), tmp_path / "cache")
    assert record["max_token_id"] == -1
    assert record["sha256"] == hashlib.sha256(b"").hexdigest()


def test_the_largest_id_is_found_past_the_first_chunk(tmp_path):
    ids = np.zeros(2**24 + 3, dtype=np.uint8)  # one 16 MiB chunk, then 3 more tokens
    ids[: 2**24] = 7
    ids[-2] = 200
    path = write(tmp_path / "big.npy", ids, np.uint8)
    record = scan_token_file(path, np.dtype(np.uint8), tmp_path / "cache")
    assert record["max_token_id"] == 200
    assert record["sha256"] == hashlib.sha256(ids.tobytes()).hexdigest()


def test_a_read_only_file_is_scanned_by_a_user_who_cannot_write_it():
    """Shared datasets are read-only to the people training on them: the scan only reads. Run as
    an unprivileged user (root may write anything), in a child process when the tests are root."""
    where = Path(tempfile.mkdtemp(prefix="olmotrain-ro-"))
    try:
        where.chmod(0o755)
        path = write(where / "a.npy", [3, 4])
        os.chmod(path, 0o444)
        cache = where / "cache"
        cache.mkdir(mode=0o777)
        cache.chmod(0o777)  # whatever the umask
        if os.getuid() != 0:
            assert scan_token_file(path, np.dtype(np.uint16), cache)["max_token_id"] == 4
            return
        import mmap  # noqa: F401  (numpy imports it lazily; nobody cannot read the installation)

        # Once here too: make mutation sees which functions a test calls in this process only.
        assert scan_token_file(path, np.dtype(np.uint16), where / "root")["max_token_id"] == 4

        child = os.fork()
        if child == 0:  # pragma: no cover - the child's exit status is the result
            code = 1
            try:
                os.setgid(65534)
                os.setuid(65534)  # nobody
                code = (
                    0
                    if scan_token_file(path, np.dtype(np.uint16), cache)["max_token_id"] == 4
                    else 1
                )
            finally:
                os._exit(code)
        deadline = time.monotonic() + 60  # a child forked from a threaded worker could hang
        while (done := os.waitpid(child, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        if done[0] == 0:
            os.kill(child, signal.SIGKILL)
            os.waitpid(child, 0)
            pytest.fail("the scan as user nobody did not finish in 60 s")
        assert os.waitstatus_to_exitcode(done[1]) == 0
    finally:
        shutil.rmtree(where, ignore_errors=True)


def test_an_unchanged_file_is_not_read_again(tmp_path):
    path = write(tmp_path / "a.npy", [3, 4])
    cache = tmp_path / "cache"
    first = scan_token_file(path, np.dtype(np.uint16), cache)
    (entry,) = cache.iterdir()
    planted = {**json.loads(entry.read_text()), "max_token_id": 99}  # what a read would not give
    entry.write_text(json.dumps(planted))
    again = scan_token_file(path, np.dtype(np.uint16), cache)
    assert again == planted and again["sha256"] == first["sha256"]


def test_the_dtype_is_part_of_what_was_scanned(tmp_path):
    path = write(tmp_path / "a.npy", [1, 2])  # bytes 01 00 02 00
    cache = tmp_path / "cache"
    assert scan_token_file(path, np.dtype(np.uint16), cache)["max_token_id"] == 2
    assert scan_token_file(path, np.dtype(np.uint8), cache)["max_token_id"] == 2
    assert scan_token_file(path, np.dtype(np.uint32), cache)["max_token_id"] == 2 * 65_536 + 1
    assert len(list(cache.iterdir())) == 3


def test_a_file_rewritten_is_read_again_and_said_so(tmp_path):
    path = write(tmp_path / "a.npy", [3, 4])
    cache = tmp_path / "cache"
    first = scan_token_file(path, np.dtype(np.uint16), cache)
    write(tmp_path / "a.npy", [3, 9000])  # same size, new content
    again = scan_token_file(path, np.dtype(np.uint16), cache)
    assert again["max_token_id"] == 9000
    assert again["changed"] == f"changed since it was checked at {first['checked']} (its content)"
    third = scan_token_file(path, np.dtype(np.uint16), cache)  # the new scan is the cached one
    assert "changed" not in third and third["max_token_id"] == 9000


def test_a_file_touched_only_is_read_again_and_said_so(tmp_path):
    path = write(tmp_path / "a.npy", [3, 4])
    cache = tmp_path / "cache"
    first = scan_token_file(path, np.dtype(np.uint16), cache)
    stat = os.stat(path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    again = scan_token_file(path, np.dtype(np.uint16), cache)
    assert again["changed"] == (
        f"changed since it was checked at {first['checked']} (its timestamps only)"
    )
    assert again["sha256"] == first["sha256"]


def test_the_check_time_is_a_readable_timestamp_and_the_cache_may_be_nested(tmp_path):
    path = write(tmp_path / "a.npy", [3])
    record = scan_token_file(path, np.dtype(np.uint16), tmp_path / "a" / "b" / "cache")
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", record["checked"])
    assert time.strftime("%Y-%m-%d") <= record["checked"] <= time.strftime("%Y-%m-%d %H:%M:%S")


def test_a_cache_entry_that_cannot_be_read_is_a_fresh_scan(tmp_path):
    path = write(tmp_path / "a.npy", [3, 4])
    cache = tmp_path / "cache"
    scan_token_file(path, np.dtype(np.uint16), cache)
    (entry,) = cache.iterdir()
    entry.unlink()
    entry.symlink_to(tmp_path, target_is_directory=True)  # reading it is an OSError
    assert scan_token_file(path, np.dtype(np.uint16), cache)["max_token_id"] == 4


def test_an_unreadable_cache_entry_is_a_fresh_scan(tmp_path):
    path = write(tmp_path / "a.npy", [3, 4])
    cache = tmp_path / "cache"
    scan_token_file(path, np.dtype(np.uint16), cache)
    (entry,) = cache.iterdir()
    entry.write_text("{not json")
    record = scan_token_file(path, np.dtype(np.uint16), cache)
    assert record["max_token_id"] == 4 and "changed" not in record
    assert json.loads(entry.read_text())["max_token_id"] == 4  # rewritten whole


# --- the run's checks: tokenizer and vocabulary -----------------------------------------------


def test_files_inside_the_vocabulary_pass_with_their_digests(tmp_path):
    a = write(tmp_path / "web" / "a.npy", [0, 8191])  # the last id of the vocabulary
    b = write(tmp_path / "code" / "b.npy", [1, 2])
    sets = [("web", [str(tmp_path / "web" / "*.npy")]), ("code", [b])]
    hashes, notes = check_token_files(TOK, sets, tmp_path / "cache")
    assert hashes == {
        os.path.abspath(p): hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in (a, b)
    }
    assert notes == []


def test_an_id_at_the_vocabulary_size_is_refused_naming_source_file_and_fix(tmp_path):
    path = write(tmp_path / "a.npy", [0, 8192])
    with pytest.raises(UserError) as e:
        check_token_files(TOK, [("web", [path])], tmp_path / "cache")
    assert str(e.value) == (
        f"data source web: {path} holds token id 8192, outside tokenizer bpe8k's vocab of 8192; "
        "it was tokenized with another tokenizer (pick the matching tokenizer=) or is corrupt"
    )


def test_a_changed_file_is_a_note(tmp_path):
    path = write(tmp_path / "a.npy", [3, 4])
    check_token_files(TOK, [("web", [path])], tmp_path / "cache")
    write(tmp_path / "a.npy", [5, 6])
    _, notes = check_token_files(TOK, [("web", [path])], tmp_path / "cache")
    assert len(notes) == 1
    assert notes[0].startswith(f"token file {path} changed since it was checked at ")
    assert notes[0].endswith(" (its content); checked again")


def test_remote_patterns_are_left_to_the_remote_checks(tmp_path):
    local = write(tmp_path / "a.npy", [1])
    sets = [("web", ["s3://olmotrain-no-such-bucket/*.npy", local])]
    hashes, _ = check_token_files(TOK, sets, tmp_path / "cache")
    assert list(hashes) == [os.path.abspath(local)]


MISMATCH = (
    "data source web was tokenized with {name} (vocab {vocab}, eos {eos}) but the run uses "
    "tokenizer=bpe8k (vocab 8192, eos 0); pick the matching tokenizer= or re-tokenize the data"
)


@pytest.mark.parametrize(
    "tokenizer",
    [{"name": "neox", "vocab_size": 50_280, "eos_token_id": 0},
     {"name": "bpe8k_eos1", "vocab_size": 8192, "eos_token_id": 1}],
)  # fmt: skip
def test_a_manifest_naming_another_tokenizer_is_refused(tmp_path, tokenizer):
    manifest(tmp_path / "ds", **tokenizer)
    path = write(tmp_path / "ds" / "tok" / "a.npy", [1])  # the manifest is two levels up
    with pytest.raises(UserError) as e:
        check_token_files(TOK, [("web", [path])], tmp_path / "cache")
    expected = MISMATCH.format(
        name=tokenizer["name"], vocab=tokenizer["vocab_size"], eos=tokenizer["eos_token_id"]
    )
    assert str(e.value) == expected


def test_a_manifest_of_the_same_shape_but_another_tokenizer_file_is_refused(tmp_path):
    tok_file = tmp_path / "tokenizer.json"
    tok_file.write_text('{"model": "bpe"}')
    run = TokenizerSchema(
        name="bpe8k", vocab_size=8192, eos_token_id=0, pad_token_id=1, path=str(tok_file)
    )
    manifest(tmp_path / "ds", sha256="0" * 64)
    path = write(tmp_path / "ds" / "a.npy", [1])
    with pytest.raises(UserError) as e:
        check_token_files(run, [("web", [path])], tmp_path / "cache")
    assert str(e.value) == MISMATCH.format(name="bpe8k", vocab=8192, eos=0)
    good = hashlib.sha256(tok_file.read_bytes()).hexdigest()
    manifest(tmp_path / "ds", sha256=good)
    assert check_token_files(run, [("web", [path])], tmp_path / "cache")[1] == []
    # a run whose tokenizer file is not here cannot compare digests: the shape decides
    manifest(tmp_path / "ds", sha256="0" * 64)
    run.path = str(tmp_path / "missing.json")
    assert check_token_files(run, [("web", [path])], tmp_path / "cache")[1] == []


def test_every_dataset_s_tokenizer_is_checked_not_only_the_first(tmp_path):
    manifest(tmp_path / "web")
    manifest(tmp_path / "code", name="neox", vocab_size=50_280)
    web = write(tmp_path / "web" / "a.npy", [1])
    code = write(tmp_path / "code" / "a.npy", [1])
    with pytest.raises(UserError) as e:
        check_token_files(TOK, [("web", [web]), ("code", [code])], tmp_path / "cache")
    assert str(e.value).startswith("data source code was tokenized with neox (vocab 50280, eos 0)")


def test_a_matching_manifest_passes_and_one_too_far_up_is_not_read(tmp_path):
    manifest(tmp_path / "ds")
    near = write(tmp_path / "ds" / "a" / "b" / "c.npy", [1])  # three levels: read
    check_token_files(TOK, [("web", [near])], tmp_path / "cache")
    manifest(tmp_path / "far", name="neox", vocab_size=50_280)
    far = write(tmp_path / "far" / "a" / "b" / "c" / "d.npy", [1])  # four levels: not read
    check_token_files(TOK, [("web", [far])], tmp_path / "cache")
    with pytest.raises(UserError, match="tokenized with neox"):
        far3 = write(tmp_path / "far" / "a" / "b" / "e.npy", [1])
        check_token_files(TOK, [("web", [far3])], tmp_path / "cache")


def test_an_unreadable_manifest_is_no_manifest(tmp_path):
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "manifest.json").write_text("{broken")
    path = write(tmp_path / "ds" / "a.npy", [1])
    assert check_token_files(TOK, [("web", [path])], tmp_path / "cache")[1] == []


def test_the_nearest_manifest_wins(tmp_path):
    manifest(tmp_path / "outer", name="neox", vocab_size=50_280)
    manifest(tmp_path / "outer" / "inner")
    path = write(tmp_path / "outer" / "inner" / "a.npy", [1])
    check_token_files(TOK, [("web", [path])], tmp_path / "cache")


# --- which tokens the held-out evaluation scores ------------------------------------------------


@pytest.mark.parametrize(
    ("ids", "length", "scored"),
    [
        # two documents ended by EOS (0): every token of each but its first
        ([5, 6, 7, 0, 8, 9, 0], 512, [6, 7, 0, 9, 0]),
        # truncated to the sequence length: positions 1 .. length - 1 of each document
        ([5, 6, 7, 0, 8, 9, 0], 2, [6, 9]),
        ([0, 0, 4, 0], 512, [0]),  # documents of only their EOS score nothing
        # tokens after the last EOS are no document (olmo-core makes no instance of them)
        ([3, 0, 4, 5], 512, [0]),
        ([5, 6, 7, 8], 3, []),
        ([], 512, []),
    ],
)
def test_the_held_out_tokens_scored_are_each_documents_after_its_first(
    tmp_path, ids, length, scored
):
    path = write(tmp_path / "heldout.npy", ids)
    assert scored_targets(path, length, 0, np.dtype(np.uint16)).tolist() == scored


def test_the_scored_tokens_are_those_of_olmo_core_s_documents(tmp_path):
    """The same documents as olmo-core's own boundary search over the token array."""
    from olmo_core.data.utils import iter_document_indices

    ids = np.random.default_rng(0).integers(0, 6, 400)  # EOS (0) about one token in six
    path = write(tmp_path / "heldout.npy", ids)
    expected = []
    for start, end in iter_document_indices(path, eos_token_id=0, dtype=np.uint16):
        expected += ids[start:end][1:8].tolist()  # positions 1 .. 7 of a length-8 instance
    assert scored_targets(path, 8, 0, np.dtype(np.uint16)).tolist() == expected


def test_scored_targets_read_the_file_s_dtype(tmp_path):
    path = write(tmp_path / "heldout.npy", [70_000, 70_001, 1], np.uint32)
    assert scored_targets(path, 512, 1, np.dtype(np.uint32)).tolist() == [70_001, 1]
