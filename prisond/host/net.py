"""Prison addresses as interface aliases, through netlink (pyroute2).

The daemon never removes an address it did not add (iocage #578, #758: a manager removed an
address the host itself used), and counts users so that an address shared by two
single-address prisons stays until both have stopped.  Calls block: run them in a thread.
"""
from __future__ import annotations

import errno
import functools
import ipaddress
import logging
import os
import socket
import threading
from concurrent.futures import ThreadPoolExecutor

from prisond.model.config import Address
from prisond.model.errors import SystemLayerError

log = logging.getLogger("prisond.host.net")

IFA_F_NODAD = 0x02
# IFA_PROTO of the aliases prisond adds: the kernel keeps who added an address (Linux 6.1 and
# later), so a daemon adopting a predecessor's records can tell its aliases from the host's
ALIAS_PROTO = 0x70


def kernel_tags_addresses(release: str | None = None) -> bool:
    """Does this kernel keep an address's IFA_PROTO (6.1 and later)?"""
    try:
        major, minor = (int(x) for x in (release or os.uname().release).split(".")[:2])
    except ValueError:
        return False
    return (major, minor) >= (6, 1)


@functools.cache
def tags_addresses() -> bool:
    """Can prisond tag its aliases: a kernel that keeps IFA_PROTO, and a pyroute2 that knows it
    (Debian 12's python3-pyroute2, 0.7.2, does not: it neither sends nor reads the tag)."""
    from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
    return kernel_tags_addresses() and "IFA_PROTO" in str(ifaddrmsg.nla_map)


def interface_for(addr: Address, prison_iface: str | None) -> str | None:
    """The interface an alias goes on: `iface|addr`, else the prison's, else lo for loopback."""
    if addr.iface:
        return addr.iface
    if prison_iface:
        return prison_iface
    if addr.ip.is_loopback:  # 127.0.0.0/8 and ::1
        return "lo"
    return None


class Netlink:
    """The few netlink calls prisond needs, on one socket owned by one thread of its own
    (pyroute2 keeps an event loop per thread that only that thread can close)."""

    def __init__(self):
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="netlink")
        self._sock = None  # touched on self._thread only

    def _on_thread(self, fn, *args):
        return self._thread.submit(fn, *args).result()

    def _ipr(self):
        if self._sock is None:
            from pyroute2 import IPRoute
            self._sock = IPRoute()
        return self._sock

    def close(self) -> None:
        def close_sock():
            if self._sock is not None:
                self._sock.close()
                self._sock = None
        try:
            self._on_thread(close_sock)
        finally:
            self._thread.shutdown()

    def has_address(self, ip) -> bool:
        return self._on_thread(self._has_address, ip)

    def add(self, ip, prefix: int, iface: str) -> bool:
        return self._on_thread(self._add, ip, prefix, iface)

    def remove(self, ip, prefix: int, iface: str) -> None:
        self._on_thread(self._remove, ip, prefix, iface)

    def ours(self) -> set[tuple[str, int, str]]:
        """(address, prefix, interface) of every address that prisond added (tagged
        ALIAS_PROTO): one dump."""
        return self._on_thread(self._ours)

    def _ours(self) -> set[tuple[str, int, str]]:
        out = set()
        for msg in self._ipr().get_addr():
            if msg.get_attr("IFA_PROTO") == ALIAS_PROTO:
                ip = str(ipaddress.ip_address(msg.get_attr("IFA_LOCAL") or msg.get_attr("IFA_ADDRESS")))
                try:
                    out.add((ip, msg["prefixlen"], socket.if_indextoname(msg["index"])))
                except OSError:
                    continue  # its interface just went
        return out

    def _has_address(self, ip) -> bool:
        """Is ip on any interface?  A full dump: used only for addresses with no interface named."""
        family = 2 if ip.version == 4 else 10
        for msg in self._ipr().get_addr(family=family):
            if msg.get_attr("IFA_ADDRESS") == str(ip) or msg.get_attr("IFA_LOCAL") == str(ip):
                return True
        return False

    def _add(self, ip, prefix: int, iface: str) -> bool:
        """Add ip/prefix to iface; False if it was there already (then it is not ours)."""
        ipr = self._ipr()
        idx = self._index(ipr, iface)
        kw = {"proto": ALIAS_PROTO} if tags_addresses() else {}
        if ip.version == 6 and iface != "lo":
            kw["flags"] = IFA_F_NODAD  # usable at once, as a jail's alias is
        try:
            ipr.addr("add", index=idx, address=str(ip), prefixlen=prefix, **kw)
            return True
        except Exception as exc:
            if getattr(exc, "code", None) == errno.EEXIST:
                return False
            raise SystemLayerError(f"cannot add {ip}/{prefix} to {iface}: {_why(exc)}", "net_error") from None

    def _remove(self, ip, prefix: int, iface: str) -> None:
        ipr = self._ipr()
        try:
            idx = self._index(ipr, iface)
            ipr.addr("del", index=idx, address=str(ip), prefixlen=prefix)
        except SystemLayerError:
            raise
        except Exception as exc:
            if getattr(exc, "code", None) in (errno.EADDRNOTAVAIL, errno.ENODEV, errno.ENOENT):
                return  # already gone
            raise SystemLayerError(f"cannot remove {ip}/{prefix} from {iface}: {_why(exc)}",
                                   "net_error") from None

    @staticmethod
    def _index(ipr, iface: str) -> int:
        """One ioctl (pyroute2's link_lookup dumps and decodes every link: most of the CPU a
        thousand prisons' start took)."""
        try:
            return socket.if_nametoindex(iface)
        except OSError:
            raise SystemLayerError(f"no interface named {iface!r}", "net_error") from None


def _why(exc: Exception) -> str:
    args: tuple = getattr(exc, "args", ())
    if len(args) >= 2 and isinstance(args[1], str):
        return args[1]
    return str(exc) or type(exc).__name__


class AliasBook:
    """Which addresses prisons use, which of them the daemon added, and on which interface.

    An alias is recorded (`record.put_alias`) before it is added and forgotten after it is
    removed, so a daemon killed at any point leaves a record of every alias it may have added."""

    def __init__(self, netlink: Netlink, record=None):
        self.netlink = netlink
        self.record = record  # state.StateStore, or None
        self.users: dict[str, set[str]] = {}        # "ip" -> prison names
        self.added: dict[str, tuple[int, str]] = {}  # "ip" -> (prefix, iface) for those we added
        self._lock = threading.Lock()

    def acquire(self, prison: str, addrs: tuple[Address, ...], prison_iface: str | None) -> None:
        """Make every address present; on failure nothing this call added is left behind."""
        done = []
        try:
            for a in addrs:
                self._acquire_one(prison, a, prison_iface)
                done.append(a)
        except BaseException:
            self.release(prison, tuple(done))
            raise

    def _acquire_one(self, prison: str, a: Address, prison_iface: str | None) -> None:
        key = str(a.ip)
        with self._lock:
            if key in self.users:
                self.users[key].add(prison)
                return
            if key not in self.added:  # else: added by us, or by the daemon before us
                iface = interface_for(a, prison_iface)
                if iface is None:
                    if not self.netlink.has_address(a.ip):
                        raise SystemLayerError(
                            f"{a.ip} is not on any interface and no interface is named for it "
                            f"(write 'IFACE|{a.ip}' or set 'interface')", "net_error")
                else:
                    if self.record:
                        self.record.put_alias(key, a.prefix, iface)
                    try:
                        if self.netlink.add(a.ip, a.prefix, iface):
                            self.added[key] = (a.prefix, iface)
                            log.info("added address %s/%d on %s", a.ip, a.prefix, iface)
                        elif self.record:
                            self.record.drop_alias(key)  # the host had it: never ours to remove
                    except BaseException:
                        if self.record:
                            self.record.drop_alias(key)
                        raise
            self.users[key] = {prison}

    def release(self, prison: str, addrs: tuple[Address, ...]) -> list[str]:
        """Drop the prison's claim; remove aliases we added that nobody uses now.  Returns errors."""
        errors = []
        for a in addrs:
            key = str(a.ip)
            with self._lock:
                users = self.users.get(key)
                if users is None:
                    continue
                users.discard(prison)
                if users:
                    continue
                del self.users[key]
                rec = self.added.pop(key, None)
            if rec:
                errors += self._remove(key, rec)
        return errors

    def _remove(self, key: str, rec: tuple[int, str]) -> list[str]:
        try:
            self.netlink.remove(ipaddress.ip_address(key), rec[0], rec[1])
            log.info("removed address %s/%d from %s", key, rec[0], rec[1])
        except SystemLayerError as exc:
            return [str(exc)]
        if self.record:
            self.record.drop_alias(key)
        return []

    def adopt_recorded(self, records: list[dict]) -> list[str]:
        """Aliases a previous daemon recorded: ours to remove once no prison uses them, if the
        kernel says a daemon added that address, with that prefix, on that interface.  A record
        is written before its alias is added, and dropped when the host had the address
        already: a daemon killed in between left a record of the host's address, which is
        returned (its record is to go), never adopted.  Without tags (a kernel before 6.1, an
        older pyroute2) every record is taken at its word."""
        ours = self.netlink.ours() if records and tags_addresses() else None
        theirs = []
        for rec in records:
            if ours is None or (rec["ip"], rec["prefix"], rec["iface"]) in ours:
                with self._lock:
                    self.added[rec["ip"]] = (rec["prefix"], rec["iface"])
            else:
                theirs.append(rec["ip"])
        return theirs

    def release_unused(self) -> list[str]:
        """Remove the aliases we added that no prison uses (after adoption)."""
        with self._lock:
            unused = [(ip, rec) for ip, rec in self.added.items() if ip not in self.users]
            for ip, _ in unused:
                del self.added[ip]
        errors = []
        for ip, rec in unused:
            errors += self._remove(ip, rec)
        return errors
