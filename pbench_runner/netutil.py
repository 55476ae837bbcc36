"""Small network helpers: free ports and host-name checks."""

from __future__ import annotations

import re
import socket

_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on ``host``.

    Callers must cope with losing the race (retry on "address in use").
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def valid_hostname(name: str) -> bool:
    """True for an RFC 1123 host name or a dotted IPv4 address."""
    if not name or len(name) > 253:
        return False
    try:
        socket.inet_aton(name)
    except OSError:
        pass
    else:
        return name.count(".") == 3
    return all(_LABEL.match(label) for label in name.rstrip(".").split("."))
