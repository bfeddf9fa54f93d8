"""What a program sees of a connection's addresses: run inside a prison by the localhost tests.

    lo_probe.py tcp-serve ADDR PORT          one line per connection accepted:
                                             "accept=A peer=A sock=A" (accept()'s address,
                                             getpeername, getsockname); answers "hello\\n";
                                             "closed peer=A sock=A" once the client closed
    lo_probe.py tcp-connect ADDR PORT [BIND] "sock=A peer=A reply=..." of a client (bound to
                                             BIND first if given), open until the answer came
    lo_probe.py udp-serve ADDR PORT          "from=A" per datagram; answers it to that address
    lo_probe.py udp-ask ADDR PORT            sends one datagram, "from=A reply=..." of the answer
    lo_probe.py dns-serve ADDR PORT          a DNS server answering every A question with
                                             192.0.2.7 (no other records): "from=A" per query

Addresses print as host:port, IPv6 as [host]:port.  Families follow ADDR (an address with ':'
is IPv6, v4-mapped ones included).
"""
import socket
import sys
import time


def fmt(addr) -> str:
    return f"[{addr[0]}]:{addr[1]}" if ":" in addr[0] else f"{addr[0]}:{addr[1]}"


def fam(addr: str) -> int:
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def say(line: str) -> None:
    print(line, flush=True)


def dns_answer(query: bytes) -> bytes:
    """The answer to a one-question query: 192.0.2.7 for type A, no record for anything else."""
    end = 12
    while query[end]:
        end += query[end] + 1
    question = query[12:end + 5]
    is_a = query[end + 1:end + 5] == b"\x00\x01\x00\x01"
    header = query[:2] + b"\x81\x80" + b"\x00\x01" + (b"\x00\x01" if is_a else b"\x00\x00") + b"\x00\x00\x00\x00"
    answer = b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04" + bytes([192, 0, 2, 7]) if is_a else b""
    return header + question + answer


def main(argv) -> int:
    what, addr, port = argv[0], argv[1], int(argv[2])
    if what == "tcp-serve":
        s = socket.socket(fam(addr), socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if ":" in addr:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        s.bind((addr, port))
        s.listen(16)
        say(f"listening {fmt(s.getsockname())}")
        while True:
            c, peer = s.accept()
            say(f"accept={fmt(peer)} peer={fmt(c.getpeername())} sock={fmt(c.getsockname())}")
            c.recv(100)
            c.sendall(b"hello\n")
            while c.recv(100):  # until the client closed
                pass
            time.sleep(0.3)  # its socket is a timewait one by now
            say(f"closed peer={fmt(c.getpeername())} sock={fmt(c.getsockname())}")
            c.close()
    if what == "tcp-connect":
        c = socket.socket(fam(addr), socket.SOCK_STREAM)
        c.settimeout(10)
        if len(argv) > 3:
            c.bind((argv[3], 0))
        c.connect((addr, port))
        line = f"sock={fmt(c.getsockname())} peer={fmt(c.getpeername())}"
        c.sendall(b"hi\n")
        say(f"{line} reply={c.recv(100).decode().strip()}")
        return 0
    if what == "udp-serve":
        s = socket.socket(fam(addr), socket.SOCK_DGRAM)
        if ":" in addr:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        s.bind((addr, port))
        say(f"listening {fmt(s.getsockname())}")
        while True:
            data, peer = s.recvfrom(1000)
            say(f"from={fmt(peer)}")
            s.sendto(b"pong:" + data, peer)
    if what == "dns-serve":
        s = socket.socket(fam(addr), socket.SOCK_DGRAM)
        s.bind((addr, port))
        say(f"listening {fmt(s.getsockname())}")
        while True:
            query, peer = s.recvfrom(1500)
            say(f"from={fmt(peer)}")
            s.sendto(dns_answer(query), peer)
    if what == "udp-ask":
        s = socket.socket(fam(addr), socket.SOCK_DGRAM)
        s.settimeout(5)
        s.sendto(b"ping", (addr, port))
        try:
            data, peer = s.recvfrom(1000)
        except socket.timeout:
            say("timeout")
            return 1
        say(f"from={fmt(peer)} reply={data.decode()}")
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
