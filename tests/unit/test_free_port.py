"""free_port: ports a server can still bind when it gets to it."""

from __future__ import annotations

import socket

from daprforge.launch import _ephemeral_ports, free_port


def test_free_ports_are_outside_the_ephemeral_range_and_bindable() -> None:
    # An ephemeral port can be taken by any outgoing connection (or a client polling it,
    # which connects to itself) before the server binds it.
    low, high = _ephemeral_ports()
    for _ in range(50):
        port = free_port()
        assert not low <= port <= high
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))
