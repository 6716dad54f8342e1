"""Starting the suite's Milvus 2.3.5 server (the ``milvus`` package) so that a start cannot hang.

The package probes each port on 127.0.0.1 without SO_REUSEADDR, while the Go server binds every
address with it; and it waits up to 180 s for a server that has already died. A port some socket
holds on the machine's own address therefore passed the probe, the server died on it ("listen tcp
:53100: bind: address already in use", an internal port; seen once on a busy machine) and every
server test after it failed. Both the session's first start and a test's restart go through
``start_milvus``: ports probed as the server binds them, and a server that dies starting is
started again.
"""

from __future__ import annotations

import socket
import time
import urllib.request
from typing import Any

TRIES = 3
START_TIMEOUT_S = 180.0


def bind_as_the_server(port: int) -> socket.socket | None:
    """The package's port probe, bound as the Go server itself binds: on every address and with
    SO_REUSEADDR (a killed server's sockets in TIME_WAIT do not make a port look taken)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("", port))
        sock.listen()
        return sock
    except OSError:
        sock.close()
        return None


def start_milvus(server: Any, port: int | None = None) -> None:
    """Start ``server`` (``milvus.default_server``), on ``port`` when given (where its clients
    already look); a server that exits before it is healthy is started again, up to TRIES."""
    if port is not None:
        server.config.configs["proxy_port"] = port
    server.config.try_bind_port = bind_as_the_server
    server.wait_for_started = False
    try:
        for _ in range(TRIES):
            server.start()
            if _healthy(server, START_TIMEOUT_S):
                return
            server.stop()
            time.sleep(5)
        raise RuntimeError(f"the Milvus server did not start in {TRIES} tries: see "
                           f"{server.config.base_data_dir}/logs/milvus-stderr.log")
    finally:
        server.wait_for_started = True


def _healthy(server: Any, timeout_s: float) -> bool:
    """Whether the started ``server`` answers its health check before it exits or time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and server.server_proc.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{server.webservice_port}/healthz",
                                        timeout=5) as response:
                if b"OK" in response.read():
                    time.sleep(1)  # as the package's own wait: ready a moment after healthy
                    return True
        except OSError:
            pass
        time.sleep(0.2)
    return False
