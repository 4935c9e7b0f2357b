"""What the kernel says about a UDP port (/proc/net/udp): bound yet? anything left unread?

Lets a test wait for a real process to be listening, and for it to have read
everything sent to it, instead of sleeping and hoping.
"""

from __future__ import annotations


def _udp_rows(port: int) -> list[list[str]]:
    rows = []
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    cols = line.split()
                    if len(cols) > 4 and int(cols[1].rsplit(":", 1)[1], 16) == port:
                        rows.append(cols)
        except OSError:
            continue
    return rows


def udp_bound(port: int) -> bool:
    return bool(_udp_rows(port))


def udp_unread_bytes(port: int) -> int:
    """Bytes waiting in the receive queues of the sockets bound to port (0 when none is bound)."""
    return sum(int(cols[4].split(":")[1], 16) for cols in _udp_rows(port))
