"""Remote token files: list, stat, read a range, download and upload, in bounded time.

olmo-core reads ``s3://``, ``r2://``, ``weka://`` (S3-compatible, with their endpoint and
profile variables) and ``http(s)://`` paths by byte ranges, retrying for minutes. The start-up
checks must instead say in seconds that a bucket, a key, credentials or an endpoint are wrong,
so this module talks to the same stores with a client of short timeouts and few retries,
configured as olmo-core configures its own (``olmo_core.io``'s endpoint and profile per scheme;
``AWS_ENDPOINT_URL_S3`` points ``s3://`` at an S3-compatible server). Every failure becomes one
:class:`UserError` line naming the path and the fix.
"""

from __future__ import annotations

import fnmatch
import functools
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from olmotrain.errors import UserError

S3_SCHEMES = ("s3", "r2", "weka")
HTTP_SCHEMES = ("http", "https")
CONNECT_TIMEOUT_S = 3
READ_TIMEOUT_S = 30
ATTEMPTS = 2
"""Tries per request: one retry for a dropped connection, never minutes of them."""
CHUNK = 8 * 2**20
_WILDCARD = re.compile(r"[*?\[]")
_CREDENTIALS = {
    "s3": "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or S3_PROFILE",
    "r2": "R2_PROFILE (a profile with the R2 keys)",
    "weka": "WEKA_PROFILE (a profile with the WEKA keys)",
}
_ENDPOINT = {
    "s3": "AWS_ENDPOINT_URL_S3 (an S3-compatible server) or the network",
    "r2": "R2_ENDPOINT_URL",
    "weka": "WEKA_ENDPOINT_URL",
}


class MissingObject(UserError):
    """The store answered: no such object (the bucket and the endpoint are fine)."""


class Unreachable(UserError):
    """The store could not be asked: no network, no endpoint, no credentials. A plan goes on
    without its sizes (a template planned on a laptop); a run refuses to start."""


@dataclass(frozen=True)
class RemoteFile:
    """One remote object: its URL, size in bytes and version tag (S3 ETag, HTTP ETag or
    Last-Modified) that tells a changed object from the copy in the cache."""

    url: str
    size: int
    etag: str


def scheme_of(url: str) -> str:
    return url.split("://", 1)[0].lower()


def checked(path: str) -> bool:
    """Whether olmotrain looks at ``path`` itself (S3-like and HTTP stores); other remote
    schemes (``gs://``) are olmo-core's alone."""
    return scheme_of(path) in S3_SCHEMES + HTTP_SCHEMES if "://" in path else False


def has_wildcard(path: str) -> bool:
    return bool(_WILDCARD.search(path))


def _split(url: str) -> tuple[str, str, str]:
    parsed = urlparse(url)
    return parsed.scheme.lower(), parsed.netloc, parsed.path.lstrip("/")


# ---- clients -------------------------------------------------------------------------------


_CLIENT_ENV = (
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_PROFILE",
    "AWS_ACCESS_KEY_ID",
    "S3_PROFILE",
    "R2_PROFILE",
    "R2_ENDPOINT_URL",
    "WEKA_PROFILE",
    "WEKA_ENDPOINT_URL",
)


def _s3_client(scheme: str) -> Any:
    """A boto3 client for ``scheme`` with olmo-core's endpoint and profile, short timeouts
    (one per scheme and setting of the variables that choose them)."""
    return _client(scheme, tuple(os.environ.get(k) for k in _CLIENT_ENV))


@functools.cache
def _client(scheme: str, _env: tuple[str | None, ...]) -> Any:
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config
    from olmo_core.exceptions import OLMoEnvironmentError
    from olmo_core.io import _get_s3_endpoint_url, _get_s3_profile_name

    try:
        profile, endpoint = _get_s3_profile_name(scheme), _get_s3_endpoint_url(scheme)
    except OLMoEnvironmentError as exc:
        raise Unreachable(f"{scheme}:// paths: {exc}") from None
    try:
        session = boto3.Session(profile_name=profile)
    except Exception as exc:  # botocore's ProfileNotFound and kin
        raise Unreachable(f"{scheme}:// paths: {exc}; set {_CREDENTIALS[scheme]}") from None
    config = Config(
        connect_timeout=CONNECT_TIMEOUT_S,
        read_timeout=READ_TIMEOUT_S,
        retries={"total_max_attempts": ATTEMPTS, "mode": "standard"},
    )
    if session.get_credentials() is None:  # a public bucket, as olmo-core reads it
        config = config.merge(Config(signature_version=UNSIGNED))
    return session.client("s3", endpoint_url=endpoint, config=config)


@functools.cache
def _http() -> Any:
    import requests

    return requests.Session()


def _endpoint(scheme: str) -> str:
    try:
        return _s3_client(scheme).meta.endpoint_url
    except UserError:
        return "?"


def explain(url: str, exc: BaseException) -> UserError:
    """One line for a failed request on ``url``: what is wrong and what to set or check."""
    import botocore.exceptions as be
    import requests

    scheme, bucket, _ = _split(url)
    if isinstance(exc, UserError):
        return exc
    if isinstance(exc, be.NoCredentialsError):
        return Unreachable(f"{url}: no credentials; set {_CREDENTIALS.get(scheme, 'credentials')}")
    if isinstance(exc, (be.EndpointConnectionError, be.ConnectTimeoutError, be.ReadTimeoutError)):
        return Unreachable(
            f"{url}: cannot reach {_endpoint(scheme)} ({type(exc).__name__}); check "
            f"{_ENDPOINT.get(scheme, 'the endpoint')}"
        )
    if isinstance(exc, be.ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code == "NoSuchBucket":
            return UserError(
                f"{url}: bucket '{bucket}' does not exist at {_endpoint(scheme)}; check the path "
                f"or {_ENDPOINT.get(scheme, 'the endpoint')}"
            )
        if code in ("NoSuchKey", "404") or status == 404:
            return MissingObject(
                f"{url} does not exist; check the path (list the bucket to see its keys)"
            )
        if (
            code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch")
            or status == 403
        ):
            return UserError(
                f"{url}: access denied ({code}); check {_CREDENTIALS.get(scheme, 'the credentials')}"
            )
        return UserError(
            f"{url}: {scheme} request failed ({code or status}: {err.get('Message', '')})"
        )
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        status = exc.response.status_code
        if status == 404:
            return MissingObject(f"{url} does not exist (HTTP 404); check the URL")
        return UserError(f"{url}: HTTP {status} {exc.response.reason}; check the URL and access")
    if isinstance(exc, requests.RequestException):
        host = urlparse(url).netloc
        return Unreachable(
            f"{url}: cannot reach {host} ({type(exc).__name__}); check the URL and the network"
        )
    return UserError(f"{url}: {type(exc).__name__}: {exc}")


def _guarded(url: str, call: Callable[[], Any]) -> Any:
    try:
        return call()
    except Exception as exc:  # every store error becomes one line
        raise explain(url, exc) from None


# ---- reading -------------------------------------------------------------------------------


def stat(url: str) -> RemoteFile:
    """Size and version tag of one object (a HEAD request); an error names the fix."""
    scheme, bucket, key = _split(url)
    if scheme in S3_SCHEMES:
        head = _guarded(url, lambda: _s3_client(scheme).head_object(Bucket=bucket, Key=key))
        return RemoteFile(url, int(head["ContentLength"]), head.get("ETag", "").strip('"'))
    if scheme in HTTP_SCHEMES:

        def head() -> Any:
            r = _http().head(url, allow_redirects=True, timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S))
            r.raise_for_status()
            return r

        r = _guarded(url, head)
        if "content-length" not in r.headers:
            raise UserError(f"{url}: the server gives no Content-Length; serve the file as is")
        tag = r.headers.get("etag") or r.headers.get("last-modified") or ""
        return RemoteFile(url, int(r.headers["content-length"]), tag.strip('"'))
    raise UserError(
        f"{url}: olmotrain checks s3://, r2://, weka:// and http(s):// paths, not {scheme}://"
    )


def _key_pattern(pattern: str) -> re.Pattern[str]:
    """A key glob as a regex: ``*`` and ``?`` stay inside one path part, ``**`` crosses them."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.find("]", i)
            if end < 0:
                out, i = out + re.escape("["), i + 1
            else:
                out, i = out + fnmatch.translate(pattern[i : end + 1])[4:-3], end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r"\Z")


def _s3_list(scheme: str, bucket: str, prefix: str) -> Iterator[dict[str, Any]]:
    pages = (
        _s3_client(scheme).get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    )
    for page in pages:
        yield from page.get("Contents", [])


def glob(pattern: str) -> list[RemoteFile]:
    """The objects a remote path or glob names (sorted by URL). A plain path is one HEAD; a
    glob lists the store from the part before its first wildcard (S3-like stores only)."""
    if not has_wildcard(pattern):
        return [stat(pattern)]
    scheme, bucket, key = _split(pattern)
    if scheme not in S3_SCHEMES:
        raise UserError(
            f"{pattern}: {scheme}:// paths cannot be listed, so they cannot be globs; list each file"
        )
    prefix = key[: _WILDCARD.search(key).start()]  # type: ignore[union-attr]
    regex = _key_pattern(key)
    objects = _guarded(pattern, lambda: list(_s3_list(scheme, bucket, prefix)))
    found = [
        RemoteFile(f"{scheme}://{bucket}/{o['Key']}", int(o["Size"]), o.get("ETag", "").strip('"'))
        for o in objects
        if regex.match(o["Key"])
    ]
    return sorted(found, key=lambda f: f.url)


def read_range(url: str, start: int, length: int) -> bytes:
    """``length`` bytes of ``url`` from ``start`` (one ranged GET)."""
    if length <= 0:
        return b""
    scheme, bucket, key = _split(url)
    span = f"bytes={start}-{start + length - 1}"
    if scheme in S3_SCHEMES:
        return _guarded(
            url,
            lambda: (
                _s3_client(scheme).get_object(Bucket=bucket, Key=key, Range=span)["Body"].read()
            ),
        )

    def get() -> bytes:
        r = _http().get(url, headers={"Range": span}, timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S))
        r.raise_for_status()
        if r.status_code != 206:
            raise UserError(
                f"{url}: the server ignores byte ranges (HTTP {r.status_code}); olmo-core needs them"
            )
        return r.content

    return _guarded(url, get)


def stream(url: str, start: int, end: int) -> Iterator[bytes]:
    """The bytes ``[start, end)`` of ``url`` in chunks (what a download writes)."""
    scheme, bucket, key = _split(url)
    span = f"bytes={start}-{end - 1}"
    if scheme in S3_SCHEMES:
        body = _guarded(
            url, lambda: _s3_client(scheme).get_object(Bucket=bucket, Key=key, Range=span)["Body"]
        )
        yield from _chunks(url, body.read)
        return
    r = _guarded(
        url,
        lambda: _http().get(
            url, headers={"Range": span}, stream=True, timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S)
        ),
    )
    _guarded(url, r.raise_for_status)
    if r.status_code != 206 and start > 0:
        raise UserError(
            f"{url}: the server ignores byte ranges (HTTP {r.status_code}); olmo-core needs them"
        )
    yield from _chunks(url, lambda n: r.raw.read(n, decode_content=True))


def _chunks(url: str, read: Callable[[int], bytes]) -> Iterator[bytes]:
    while True:
        chunk = _guarded(url, lambda: read(CHUNK))
        if not chunk:
            return
        yield chunk


def exists(url: str) -> bool:
    """Whether ``url`` exists (a missing object is ``False``; any other failure is an error)."""
    try:
        stat(url)
        return True
    except MissingObject:
        return False


def upload(local: str | os.PathLike[str], url: str) -> None:
    """Put a local file at ``url`` (S3-like stores)."""
    scheme, bucket, key = _split(url)
    if scheme not in S3_SCHEMES:
        raise UserError(
            f"{url}: olmotrain writes to s3://, r2:// and weka:// stores, not {scheme}://"
        )
    _guarded(url, lambda: _s3_client(scheme).upload_file(str(local), bucket, key))


def check_writable_prefix(prefix: str) -> None:
    """That ``prefix``'s bucket exists and takes a write (a small marker object, removed)."""
    scheme, bucket, key = _split(prefix)
    if scheme not in S3_SCHEMES:
        raise UserError(
            f"{prefix}: olmotrain writes to s3://, r2:// and weka:// stores, not {scheme}://"
        )
    marker = f"{key.rstrip('/')}/.olmotrain-write-check".lstrip("/")
    client = _s3_client(scheme)
    _guarded(prefix, lambda: client.put_object(Bucket=bucket, Key=marker, Body=b""))
    _guarded(prefix, lambda: client.delete_object(Bucket=bucket, Key=marker))
