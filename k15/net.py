"""Loopback networking shared by the servers and the trainer's process group."""

from __future__ import annotations

import socket

_handed_out: set[int] = set()  # ports this process already gave to a server that may not have bound them yet


def free_port(host: str = "127.0.0.1") -> int:
    """A port that is free on ``host`` now (the OS picks it), never one this process handed out before: a server
    told its port may bind it only tens of seconds later, and the OS may offer the same port again meanwhile."""
    while True:
        with socket.socket() as sock:
            sock.bind((host, 0))
            port = sock.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def listen(host: str, port: int = 0) -> socket.socket:
    """A socket listening on ``host:port`` (0: a free port), so a server holds its address before it starts serving;
    connections made meanwhile wait in the backlog (as with systemd's socket activation)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)  # listening, not just bound: with SO_REUSEADDR a bound-only address can be bound again
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock
