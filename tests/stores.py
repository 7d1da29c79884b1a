"""Real servers on 127.0.0.1 for the remote-data tests: an S3-compatible object store (moto's
server mode: the S3 REST API over HTTP, in a thread) and a plain HTTP file server that honours
byte ranges, as a CDN serving ``https://olmo-data.org/...npy`` does."""

from __future__ import annotations

import contextlib
import http.server
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

BUCKET = "corpus"
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "olmotrain-test",
    "AWS_SECRET_ACCESS_KEY": "olmotrain-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@dataclass
class S3:
    """A running S3-compatible server: its endpoint and the environment that points at it."""

    endpoint: str
    env: dict[str, str]

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, **_keys())

    def upload(self, local: Path, key: str, bucket: str = BUCKET) -> str:
        self.client().upload_file(str(local), bucket, key)
        return f"s3://{bucket}/{key}"


def _keys() -> dict[str, str]:
    return {
        "aws_access_key_id": CREDENTIALS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        "region_name": CREDENTIALS["AWS_DEFAULT_REGION"],
    }


@contextlib.contextmanager
def s3_server() -> Iterator[S3]:
    """moto's S3 server on a free port of 127.0.0.1 with bucket ``corpus``."""
    import logging

    from moto.server import ThreadedMotoServer

    # Its request log would land in the output of the commands tests run in this process.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    env = {**CREDENTIALS, "AWS_ENDPOINT_URL_S3": endpoint, "OLMO_NO_SSL": "1"}
    store = S3(endpoint, env)
    store.client().create_bucket(Bucket=BUCKET)
    try:
        yield store
    finally:
        server.stop()


class _RangeHandler(http.server.SimpleHTTPRequestHandler):
    """GET with ``Range: bytes=a-b`` answers 206 with those bytes; HEAD gives the size."""

    def log_message(self, *args) -> None:  # quiet
        pass

    def send_head(self):  # type: ignore[override]
        path = Path(self.translate_path(self.path))
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        if not path.is_file() or not match:
            return super().send_head()
        size = path.stat().st_size
        start = int(match.group(1))
        end = min(int(match.group(2)) if match.group(2) else size - 1, size - 1)
        if start >= size:
            self.send_error(416)
            return None
        f = path.open("rb")
        f.seek(start)
        self.send_response(206)
        self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        self._remaining = end - start + 1
        return f

    def copyfile(self, source, outputfile) -> None:  # type: ignore[override]
        remaining = getattr(self, "_remaining", None)
        if remaining is None:
            return super().copyfile(source, outputfile)
        while remaining > 0:
            chunk = source.read(min(remaining, 1 << 20))
            if not chunk:
                break
            outputfile.write(chunk)
            remaining -= len(chunk)


@contextlib.contextmanager
def http_server(root: Path) -> Iterator[str]:
    """An HTTP server for ``root`` on a free port of 127.0.0.1; yields its base URL."""
    handler = partial(_RangeHandler, directory=os.fspath(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def s3_requests() -> Iterator[list[str]]:
    """The request lines the S3 server answers meanwhile (``GET /corpus?list-type=2&prefix=...``):
    werkzeug logs each one; kept here and not printed."""
    import logging

    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    logger = logging.getLogger("werkzeug")
    level, propagate, handler = logger.level, logger.propagate, Keep()
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


def listed_prefixes(lines: list[str]) -> dict[str, int]:
    """How many times each prefix was listed, from :func:`s3_requests`' lines."""
    from collections import Counter
    from urllib.parse import unquote

    found = (re.search(r"[?&]prefix=([^& \"]*)", ln) for ln in lines if "list-type=2" in ln)
    return dict(Counter(unquote(m.group(1)) for m in found if m))
