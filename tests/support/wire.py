"""Watching loopback with scapy: what really went over the wire."""
from __future__ import annotations

import socket
import time

from scapy.all import IP, TCP, UDP, AsyncSniffer, IPv6, conf

conf.verb = 0
MARKER = b"prisond-wire-marker"


class Wire:
    """Capture on lo while the block runs.  Start-up is confirmed by seeing a marker packet,
    not by sleeping, so no packet of the test is missed."""

    def __init__(self, iface: str = "lo"):
        self.iface = iface
        self.packets = []  # filled as packets arrive: AsyncSniffer.results appears only at stop
        self.sniffer = AsyncSniffer(iface=iface, store=False, promisc=False, prn=self.packets.append)

    def __enter__(self) -> Wire:
        self.sniffer.start()
        deadline = time.monotonic() + 10
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            while time.monotonic() < deadline:
                s.sendto(MARKER, ("127.0.0.1", 9))
                time.sleep(0.1)
                if any(UDP in p and bytes(p[UDP].payload) == MARKER for p in list(self.packets)):
                    return self
        finally:
            s.close()
        self.sniffer.stop()
        raise RuntimeError("the sniffer did not start")

    def __exit__(self, *exc) -> None:
        time.sleep(0.3)  # let the last packets of the test be read
        self.sniffer.stop()

    @staticmethod
    def _ip(p):
        return p[IP] if IP in p else (p[IPv6] if IPv6 in p else None)

    def syns(self, dport: int) -> list[tuple[str, str]]:
        """(source, destination) of every TCP SYN (without ACK) to dport."""
        out = []
        for p in self.packets:
            ip = self._ip(p)
            if ip is not None and TCP in p and p[TCP].dport == dport and (p[TCP].flags & 0x12) == 0x02:
                out.append((ip.src, ip.dst))
        return out

    def tcp_from(self, sport: int) -> list[tuple[str, str, int]]:
        """(source, destination, flags) of every TCP segment sent from sport."""
        out = []
        for p in self.packets:
            ip = self._ip(p)
            if ip is not None and TCP in p and p[TCP].sport == sport:
                out.append((ip.src, ip.dst, int(p[TCP].flags)))
        return out

    def udp(self, dport: int) -> list[tuple[str, str]]:
        out = []
        for p in self.packets:
            ip = self._ip(p)
            if ip is not None and UDP in p and p[UDP].dport == dport and bytes(p[UDP].payload) != MARKER:
                out.append((ip.src, ip.dst))
        return out
