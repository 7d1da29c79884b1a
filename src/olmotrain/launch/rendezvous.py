"""The rendezvous of a multi-node job: ranks reach the first node, or fail in bounded time.

submitit sets ``MASTER_ADDR`` to the allocation's first node and ``MASTER_PORT`` to a port
derived from the job id (the same on every node). torch's own connect would retry for the whole
process-group timeout (15 minutes in olmo-core) and then fail with a generic store error; a rank
whose network cannot reach the first node should say so, with the address, much sooner.
"""

from __future__ import annotations

import socket
import time

from olmotrain.errors import UserError


def wait_for_master(addr: str, port: int, timeout_s: float, rank: int) -> None:
    """Block until ``addr:port`` accepts a TCP connection (rank 0 opens it when it starts its
    process group); raise a one-line ``UserError`` naming the address after ``timeout_s``."""
    me = f"rank {rank} on {socket.gethostname()}"
    try:
        ip = socket.getaddrinfo(addr, port, type=socket.SOCK_STREAM)[0][4][0]
    except socket.gaierror as exc:
        raise UserError(
            f"{me}: the rendezvous address MASTER_ADDR={addr} does not resolve ({exc.strerror}); "
            "the first node's name must resolve on every node (DNS or /etc/hosts)"
        ) from None
    deadline = time.monotonic() + timeout_s
    why = "no answer"
    while True:
        try:
            with socket.create_connection((ip, port), timeout=min(5.0, timeout_s)):
                return
        except OSError as exc:
            why = exc.strerror or type(exc).__name__
        if time.monotonic() >= deadline:
            break
        time.sleep(1.0)
    raise UserError(
        f"{me} could not reach the rendezvous at {addr} ({ip}):{port} within {timeout_s:g} s "
        f"({why}); check that the nodes reach each other on that address and port, or raise "
        "cluster.rendezvous_timeout_s if the first node starts slowly"
    )
