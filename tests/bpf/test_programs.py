import ipaddress
import struct

from prisond.bpf import programs as P
from prisond.bpf.enforce import policy_value
from prisond.config import parse


def test_policy_layout():
    spec = parse("prisons:\n  a:\n    ip4: [127.0.2.1, 127.0.2.2]\n    ip6: ['lo|fd00::1']\n"
                 "    allow: {raw_sockets: true}\n", "x").prisons[0]
    v = policy_value(spec)
    assert len(v) == P.POLICY_SIZE == 352
    flags, n4, n6 = struct.unpack_from("<III", v, 0)
    assert (flags, n4, n6) == (P.F_RAW, 2, 1)
    assert v[P.LO4:P.LO4 + 4] == ipaddress.ip_address("127.0.2.1").packed  # loopback goes to the primary
    assert v[P.IP4 + 4:P.IP4 + 8] == ipaddress.ip_address("127.0.2.2").packed
    assert v[P.IP6:P.IP6 + 16] == ipaddress.ip_address("fd00::1").packed
    # 127.0.0.1 as the programs compare it
    assert struct.unpack("<I", ipaddress.ip_address("127.0.0.1").packed)[0] == P.LOOPBACK4


def test_per_cpu_counters_are_summed():
    one = struct.pack("<8Q", 1, 2, 3, 4, 5, 6, 7, 8)
    assert P.decode_counters(one + one, ncpus=2) == dict(zip(P.COUNTERS, (2, 4, 6, 8, 10, 12, 14, 16)))


def test_every_program_assembles_within_the_jump_range():
    for gen in (P.bind4, P.bind6, P.connect4, P.connect6, P.sendmsg4, P.sendmsg6, P.sock_create):
        assert 0 < len(gen(3, 4)) // 8 < 4096
    assert len(P.skb_filter(3, 4, egress=True)) // 8 < 4096
