"""A FUSE file system (the raw protocol on /dev/fuse, no libfuse) of one file whose getxattr
is answered only after HOLD seconds: what a tenant's FUSE server can do to whoever asks.  Run
as a program: it mounts in a mount namespace of its own, opens the file, prints the
descriptor's number, then, for each line on stdin, the number of GETXATTR requests it got;
`quit` closes the file and unmounts (killed instead, its exit would wait on itself: the close
of the file asks the server to flush).

    python3 fusehold.py HOLD
"""
import ctypes
import os
import struct
import sys
import tempfile
import threading

CLONE_NEWNS = 0x00020000
FUSE_LOOKUP, FUSE_FORGET, FUSE_GETATTR, FUSE_OPEN, FUSE_GETXATTR, FUSE_INIT, FUSE_BATCH_FORGET = 1, 2, 3, 14, 22, 26, 42


def mount_fuse(name: bytes) -> tuple[ctypes.CDLL, str, int]:
    """A FUSE mount in a mount namespace of this process's own: (libc, its directory, /dev/fuse)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNS) != 0 or libc.mount(b"none", b"/", None, 0x40000 | 0x4000, None) != 0:
        raise OSError(ctypes.get_errno(), "unshare or make / private")  # MS_PRIVATE | MS_REC
    mnt = tempfile.mkdtemp()
    dev = os.open("/dev/fuse", os.O_RDWR)
    if libc.mount(name, mnt.encode(), b"fuse", 0x2 | 0x4,  # MS_NOSUID | MS_NODEV
                  f"fd={dev},rootmode=40000,user_id=0,group_id=0".encode()) != 0:
        raise OSError(ctypes.get_errno(), "mount fuse")
    return libc, mnt, dev


def main() -> None:
    hold = float(sys.argv[1])
    libc, mnt, dev = mount_fuse(b"fusehold")
    asked = [0]

    def attr(ino: int, mode: int) -> bytes:
        return struct.pack("=QQQQQQIIIIIIIIII", ino, 0, 0, 0, 0, 0, 0, 0, 0, mode, 1, 0, 0, 0, 4096, 0)

    def reply(unique: int, err: int = 0, body: bytes = b"") -> None:
        os.write(dev, struct.pack("=IiQ", 16 + len(body), err, unique) + body)

    def serve() -> None:
        while True:
            buf = os.read(dev, 1 << 17)
            _, op, unique, node = struct.unpack_from("=IIQQ", buf)
            if op == FUSE_INIT:
                reply(unique, 0, struct.pack("=IIIIHHIIHHII", 7, 31, 65536, 0, 16, 12, 65536, 1, 0, 0, 0, 0)
                      + bytes(24))
            elif op == FUSE_LOOKUP:
                reply(unique, 0, struct.pack("=QQQQII", 2, 0, 60, 60, 0, 0) + attr(2, 0o100644))
            elif op == FUSE_GETATTR:
                reply(unique, 0, struct.pack("=QII", 60, 0, 0) + attr(node, 0o40755 if node == 1 else 0o100644))
            elif op == FUSE_OPEN:
                reply(unique, 0, struct.pack("=QIi", 1, 0, 0))
            elif op == FUSE_GETXATTR:
                asked[0] += 1
                threading.Timer(hold, reply, (unique, -61)).start()  # ENODATA, late
            elif op not in (FUSE_FORGET, FUSE_BATCH_FORGET):
                reply(unique, -38)  # ENOSYS

    threading.Thread(target=serve, daemon=True).start()
    fd = os.open(os.path.join(mnt, "f"), os.O_RDONLY)
    print(fd, flush=True)
    for line in sys.stdin:
        if line.strip() == "quit":
            break
        print(asked[0], flush=True)
    os.close(fd)
    libc.umount2(mnt.encode(), 2)  # MNT_DETACH
    os._exit(0)


if __name__ == "__main__":
    main()
