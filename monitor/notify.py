"""systemd's notify protocol ($NOTIFY_SOCKET datagrams): READY=1, STATUS=..., WATCHDOG=1, STOPPING=1."""

from __future__ import annotations

import os
import socket


class Notifier:
    def __init__(self):
        address = os.environ.get("NOTIFY_SOCKET")
        if address and address.startswith("@"):
            address = "\0" + address[1:]  # abstract namespace
        self.address = address
        usec = os.environ.get("WATCHDOG_USEC")
        self.watchdog_s = int(usec) / 1e6 if usec and usec.isdigit() else None

    def send(self, *fields: str) -> None:
        if not self.address:
            return
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)  # never block the event loop on a full receiver
            try:
                sock.sendto("\n".join(fields).encode(), self.address)
            except OSError:
                pass  # systemd gone, or its queue full: this notification is dropped, the next one follows
