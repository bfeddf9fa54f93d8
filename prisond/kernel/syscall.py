"""bpf(2) from Python through ctypes: maps, program loading, cgroup attachment, queries.

Only the commands prisond uses.  Every failure is a KernelLayerError naming the command and
the errno, with the verifier's log for a refused program.
"""
from __future__ import annotations

import ctypes
import errno
import os
import platform
import struct
import threading

from prisond.model.errors import SystemLayerError

_NR_BPF = {"x86_64": 321, "aarch64": 280}.get(platform.machine())  # None: a machine prisond does not know
_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long

MAP_CREATE, MAP_LOOKUP_ELEM, MAP_UPDATE_ELEM, MAP_DELETE_ELEM, MAP_GET_NEXT_KEY = 0, 1, 2, 3, 4
PROG_LOAD, PROG_ATTACH = 5, 8
PROG_GET_FD_BY_ID, MAP_GET_FD_BY_ID, OBJ_GET_INFO_BY_FD, PROG_QUERY, BTF_LOAD = 13, 14, 15, 16, 18
LINK_CREATE = 28

MAP_TYPE_HASH, MAP_TYPE_CGROUP_STORAGE, MAP_TYPE_PERCPU_CGROUP_STORAGE, MAP_TYPE_SK_STORAGE = 1, 19, 21, 24
MAP_TYPE_SOCKHASH = 18
PROG_TYPE_CGROUP_SKB, PROG_TYPE_CGROUP_SOCK, PROG_TYPE_CGROUP_SOCK_ADDR = 8, 9, 18
PROG_TYPE_SOCK_OPS, PROG_TYPE_SK_LOOKUP = 13, 30
F_ALLOW_MULTI = 2
F_NO_PREALLOC = 1
ANY, NOEXIST = 0, 1

ATTACH = {  # attach types (enum bpf_attach_type)
    "ingress": 0, "egress": 1, "sock_create": 2, "bind4": 8, "bind6": 9, "connect4": 10, "connect6": 11,
    "post_bind4": 12, "post_bind6": 13, "sendmsg4": 14, "sendmsg6": 15, "sock_release": 34,
    "sock_ops": 3, "sk_lookup": 36,
    "recvmsg4": 19, "recvmsg6": 20, "getpeername4": 29, "getpeername6": 30, "getsockname4": 31,
    "getsockname6": 32,
}


class KernelLayerError(SystemLayerError):
    code = "kernel_error"


def _nr_bpf() -> int:
    """bpf(2)'s number here; on a machine prisond does not know, an error (the kernel layer is
    then unavailable, with this as the reason), never another system call's number."""
    if _NR_BPF is None:
        raise KernelLayerError(f"bpf(2): prisond does not know its system call number on {platform.machine()}",
                               "kernel_error")
    return _NR_BPF


def _bpf(cmd: int, attr: bytes, what: str) -> tuple[int, ctypes.Array[ctypes.c_char]]:
    """The call's result and the attribute buffer (some commands answer in it)."""
    buf = ctypes.create_string_buffer(attr, max(len(attr), 128))
    r = _libc.syscall(_nr_bpf(), cmd, buf, ctypes.c_uint(len(buf)))
    if r < 0:
        e = ctypes.get_errno()
        raise KernelLayerError(f"bpf({what}): {os.strerror(e)}", "kernel_error") from None
    return r, buf


def possible_cpus() -> int:
    """How many per-CPU copies a per-CPU map value has (/sys/devices/system/cpu/possible)."""
    with open("/sys/devices/system/cpu/possible") as fh:
        n = 0
        for part in fh.read().strip().split(","):
            lo, _, hi = part.partition("-")
            n += int(hi or lo) - int(lo) + 1
        return n


def map_create(key_size: int, value_size: int, max_entries: int, name: str, map_type: int = MAP_TYPE_HASH,
               flags: int = 0, btf: tuple[int, int, int] | None = None) -> int:
    """btf: (BTF fd, key type id, value type id), which some map types require."""
    btf_fd, key_id, value_id = btf or (0, 0, 0)
    attr = struct.pack("<IIIIIII16sIIII", map_type, key_size, value_size, max_entries, flags, 0, 0,
                       name.encode()[:15], 0, btf_fd, key_id, value_id)
    fd, _ = _bpf(MAP_CREATE, attr, f"map_create {name}")
    return fd


def btf_load(blob: bytes) -> int:
    """Load type information (BPF_BTF_LOAD); the kernel's complaint, if any, in the error."""
    data = ctypes.create_string_buffer(blob, len(blob))
    log = ctypes.create_string_buffer(1 << 16)
    attr = struct.pack("<QQIII", ctypes.addressof(data), ctypes.addressof(log), len(blob), len(log), 1)
    try:
        fd, _ = _bpf(BTF_LOAD, attr, "btf_load")
    except KernelLayerError as exc:
        raise KernelLayerError(f"{exc.message}\n{log.value.decode(errors='replace').strip()}", "kernel_error") from None
    return fd


def map_update(fd: int, key: bytes, value: bytes, flags: int = ANY) -> None:
    k, v = ctypes.create_string_buffer(key, len(key)), ctypes.create_string_buffer(value, len(value))
    attr = struct.pack("<IIQQQ", fd, 0, ctypes.addressof(k), ctypes.addressof(v), flags)
    _bpf(MAP_UPDATE_ELEM, attr, "map_update")


def map_delete(fd: int, key: bytes) -> bool:
    """False when the key was not there."""
    k = ctypes.create_string_buffer(key, len(key))
    try:
        _bpf(MAP_DELETE_ELEM, struct.pack("<IIQ", fd, 0, ctypes.addressof(k)), "map_delete")
    except KernelLayerError as exc:
        if "No such file" in str(exc):
            return False
        raise
    return True


def map_keys(fd: int, key_size: int, limit: int = 1 << 22) -> list[bytes]:
    """Every key of a hash map (BPF_MAP_GET_NEXT_KEY from none)."""
    keys: list[bytes] = []
    cur = None
    nxt = ctypes.create_string_buffer(key_size)
    while len(keys) < limit:
        k = ctypes.create_string_buffer(cur, key_size) if cur is not None else None
        attr = struct.pack("<IIQQ", fd, 0, ctypes.addressof(k) if k is not None else 0, ctypes.addressof(nxt))
        try:
            _bpf(MAP_GET_NEXT_KEY, attr, "map_get_next_key")
        except KernelLayerError as exc:
            if "No such file" in str(exc):
                break
            raise
        cur = nxt.raw
        keys.append(cur)
    return keys


class Lookup:
    """map_lookup for one map, over buffers made once per thread: the counter watcher looks up
    250 prisons a second, and making the three ctypes buffers each time was most of a lookup."""

    def __init__(self, fd: int, key_size: int, value_size: int):
        self.fd, self.key_size, self.value_size = fd, key_size, value_size
        self._local = threading.local()

    def __call__(self, key: bytes) -> bytes | None:
        b = getattr(self._local, "b", None)
        if b is None:
            k, v = ctypes.create_string_buffer(self.key_size), ctypes.create_string_buffer(self.value_size)
            attr = ctypes.create_string_buffer(struct.pack("<IIQQQ", self.fd, 0, ctypes.addressof(k),
                                                           ctypes.addressof(v), 0), 128)
            b = self._local.b = (k, v, attr, _nr_bpf(), ctypes.c_uint(128))
        k, v, attr, nr, size = b
        ctypes.memmove(k, key, self.key_size)
        if _libc.syscall(nr, MAP_LOOKUP_ELEM, attr, size) < 0:
            e = ctypes.get_errno()
            if e == errno.ENOENT:
                return None
            raise KernelLayerError(f"bpf(map_lookup): {os.strerror(e)}", "kernel_error")
        return v.raw


def map_lookup(fd: int, key: bytes, value_size: int) -> bytes | None:
    k, v = ctypes.create_string_buffer(key, len(key)), ctypes.create_string_buffer(value_size)
    attr = struct.pack("<IIQQQ", fd, 0, ctypes.addressof(k), ctypes.addressof(v), 0)
    try:
        _bpf(MAP_LOOKUP_ELEM, attr, "map_lookup")
    except KernelLayerError as exc:
        if "No such file" in str(exc):
            return None
        raise
    return v.raw


def prog_load(prog_type: int, insns: bytes, attach_type: int, name: str) -> int:
    """Load a program.  Without the verifier's log first (writing it costs the verifier time);
    on failure again with it, for the reason.  The verifier gives up with EAGAIN when a signal
    is pending for the caller (a child's SIGCHLD, a debugger's stop): tried again, as libbpf
    does."""
    for attempt in range(6):
        r, e, _ = _prog_load(prog_type, insns, attach_type, name, with_log=attempt == 5)
        if r >= 0:
            return r
        if e != errno.EAGAIN:
            break
    r, e, tail = _prog_load(prog_type, insns, attach_type, name, with_log=True)
    if r >= 0:
        return r
    raise KernelLayerError(f"bpf(prog_load {name}): {os.strerror(e)}\n" + "\n".join(tail), "kernel_error")


def _prog_load(prog_type: int, insns: bytes, attach_type: int, name: str, with_log: bool) -> tuple[int, int, list]:
    lic = ctypes.create_string_buffer(b"GPL")
    code = ctypes.create_string_buffer(insns, len(insns))
    log = ctypes.create_string_buffer(1 << 20 if with_log else 1)
    attr = struct.pack("<IIQQIIQII16sII", prog_type, len(insns) // 8, ctypes.addressof(code),
                       ctypes.addressof(lic), int(with_log), len(log) if with_log else 0,
                       ctypes.addressof(log) if with_log else 0, 0, 0, name.encode()[:15], 0, attach_type)
    buf = ctypes.create_string_buffer(attr, 128)
    r = _libc.syscall(_nr_bpf(), PROG_LOAD, buf, ctypes.c_uint(128))
    if r >= 0:
        return r, 0, []
    return r, ctypes.get_errno(), log.value.decode(errors="replace").strip().splitlines()[-12:]


def prog_attach(cgroup_fd: int, prog_fd: int, attach_type: int) -> None:
    _bpf(PROG_ATTACH, struct.pack("<IIIII", cgroup_fd, prog_fd, attach_type, F_ALLOW_MULTI, 0), "prog_attach")


def link_create(prog_fd: int, target_fd: int, attach_type: int) -> int:
    """A bpf_link (BPF_LINK_CREATE): the program stays attached to target (a network namespace
    for BPF_SK_LOOKUP) while the link's fd (or a pin) lives, and goes when it closes."""
    fd, _ = _bpf(LINK_CREATE, struct.pack("<IIII", prog_fd, target_fd, attach_type, 0), "link_create")
    return fd


def prog_query(cgroup_fd: int, attach_type: int) -> list[int]:
    ids = (ctypes.c_uint32 * 64)()
    attr = struct.pack("<IIIIQI", cgroup_fd, attach_type, 0, 0, ctypes.addressof(ids), 64)
    _, buf = _bpf(PROG_QUERY, attr, "prog_query")
    count = struct.unpack_from("<I", buf.raw, 24)[0]
    return list(ids[:count])


def prog_fd_by_id(prog_id: int) -> int:
    fd, _ = _bpf(PROG_GET_FD_BY_ID, struct.pack("<III", prog_id, 0, 0), "prog_get_fd_by_id")
    return fd


def map_fd_by_id(map_id: int) -> int:
    fd, _ = _bpf(MAP_GET_FD_BY_ID, struct.pack("<III", map_id, 0, 0), "map_get_fd_by_id")
    return fd


def prog_info(fd: int) -> dict:
    """name, type and the ids of the maps a loaded program uses."""
    map_ids = (ctypes.c_uint32 * 16)()
    info = ctypes.create_string_buffer(256)
    struct.pack_into("<I", info, 52, 16)
    struct.pack_into("<Q", info, 56, ctypes.addressof(map_ids))
    _bpf(OBJ_GET_INFO_BY_FD, struct.pack("<IIQ", fd, 256, ctypes.addressof(info)), "obj_get_info")
    ptype, pid = struct.unpack_from("<II", info.raw, 0)
    nmaps = struct.unpack_from("<I", info.raw, 52)[0]
    name = info.raw[64:80].split(b"\0")[0].decode()
    run_ns, runs = struct.unpack_from("<QQ", info.raw, 192)  # counted while kernel.bpf_stats_enabled
    return {"type": ptype, "id": pid, "name": name, "map_ids": list(map_ids[:nmaps]),
            "run_time_ns": run_ns, "run_cnt": runs}


def map_info(fd: int) -> dict:
    info = ctypes.create_string_buffer(128)
    _bpf(OBJ_GET_INFO_BY_FD, struct.pack("<IIQ", fd, 128, ctypes.addressof(info)), "obj_get_info")
    mtype, mid, ksz, vsz = struct.unpack_from("<IIII", info.raw, 0)
    name = info.raw[24:40].split(b"\0")[0].decode()
    return {"type": mtype, "id": mid, "key_size": ksz, "value_size": vsz, "name": name}


