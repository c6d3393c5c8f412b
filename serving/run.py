"""``pestid serve``: uvicorn with N workers, each loading the model once."""

from __future__ import annotations

import os
import socket
import tempfile


def _listening_socket(host: str, port: int) -> socket.socket:
    """The shared socket for the workers, made with proto=IPPROTO_TCP.

    uvicorn's own (``socket.socket(family=…)``) leaves proto at 0, so asyncio skips
    TCP_NODELAY on accepted connections and every keep-alive response waits ~40 ms
    for a delayed ACK. Measured: 44 ms → 1.5 ms per keep-alive GET with 2 workers.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def serve(*, model: str, host: str = "127.0.0.1", port: int = 8000, workers: int = 1) -> None:
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    os.environ["PESTID_MODEL"] = model
    os.environ["PESTID_WORKERS"] = str(workers)
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="pestid-metrics-")
    config = uvicorn.Config("pestid.serving.app:create_app", factory=True, host=host, port=port, workers=workers,
                            log_level="warning", access_log=False)  # fmt: skip
    if workers <= 1:
        uvicorn.Server(config).run()
        return
    Multiprocess(config, sockets=[_listening_socket(host, port)]).run()
