import ipaddress
import struct

from prisond.kernel import programs as P
from prisond.kernel import enforce as E
from prisond.kernel import steer
from prisond.kernel.enforce import policy_value, shared_addresses
from prisond.model.config import parse


def test_policy_layout():
    spec = parse("prisons:\n  a:\n    ip4: [127.0.2.1, 127.0.2.2]\n    ip6: ['lo|fd00::1']\n"
                 "    allow: {raw_sockets: true}\n", "x").prisons[0]
    v = policy_value(spec)
    assert len(v) == P.POLICY_SIZE == 360
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
    maps = P.Maps(3, 4, 5, 6, 7, 8, 9)
    for gen in (P.bind4, P.bind6, P.connect4, P.connect6, P.sendmsg4, P.sendmsg6, P.sock_create, P.sock_release,
                steer.sock_ops, steer.sk_lookup):
        assert 0 < len(gen(maps)) // 8 < 4096
    for v6 in (False, True):
        assert len(P.post_bind(maps, v6=v6)) // 8 < 4096
        assert len(P.skb_filter(maps, egress=v6)) // 8 < 4096


CONFIG = """prisons:
  a: {ip4: [127.0.7.1], ip6: ['lo|fd00:7::1']}
  b: {ip4: [127.0.7.1], ip6: ['lo|fd00:8::1']}
  c: {ip4: [127.0.9.1, 127.0.9.2]}
"""


def test_shared_addresses_are_those_of_two_prisons():
    prisons = parse(CONFIG, "x").prisons
    assert shared_addresses(prisons) == {ipaddress.ip_address("127.0.7.1")}


def test_a_family_with_a_shared_address_is_tracked_and_owned():
    a, b, c = parse(CONFIG, "x").prisons
    shared = shared_addresses([a, b, c])
    pa = P.decode_policy(policy_value(a, shared, owner=77))
    assert pa["flags"] == P.F_TRACK4 and pa["owner"] == 77  # fd00:7::1 is a's alone
    assert P.decode_policy(policy_value(c, shared))["flags"] == 0


def test_tracking_that_starts_while_a_prison_holds_the_family_taints_it_for_good():
    a, b, c = parse(CONFIG, "x").prisons
    shared = shared_addresses([a, b])
    untracked = policy_value(a, frozenset(), owner=5)
    fresh = bytes(P.POLICY_SIZE)  # a new cgroup's storage: nothing held yet
    assert P.decode_policy(policy_value(a, shared, 5, fresh))["flags"] == P.F_TRACK4
    tainted = policy_value(a, shared, 5, untracked)
    assert P.decode_policy(tainted)["flags"] == P.F_TRACK4 | P.F_TAINT4
    # the mark stays with the cgroup: a later write (even unshared again) keeps it
    assert P.decode_policy(policy_value(a, shared, 5, tainted))["flags"] & P.F_TAINT4
    assert P.decode_policy(policy_value(a, frozenset(), 5, tainted))["flags"] == P.F_TAINT4
    # a running prison with no policy of ours (an upgrade from other programs): tainted too
    assert P.decode_policy(policy_value(a, shared, 5, fresh, running=True))["flags"] & P.F_TAINT4


def test_the_socket_storage_btf_describes_a_24_byte_value():
    blob = P.claims_btf()
    magic, version, flags, hdr_len, type_off, type_len, str_off, str_len = struct.unpack_from("<HBBIIIII", blob)
    assert (magic, version, hdr_len) == (0xEB9F, 1, 24) and len(blob) == 24 + type_len + str_len
    nelems = struct.unpack_from("<III", blob, 24 + 16 + 12)[2]
    assert nelems * 4 == P.CLAIM_STORE_SIZE
    assert struct.unpack_from("<III", P.claims_btf(P.WILD_SIZE), 24 + 16 + 12)[2] * 4 == P.WILD_SIZE


def test_the_address_map_keys_ipv4_as_v4_mapped():
    """The sk_lookup program looks a destination up as 16 bytes, IPv4 as ::ffff:a.b.c.d."""
    assert E._addr_key(ipaddress.ip_address("127.0.4.2")) == bytes(10) + b"\xff\xff\x7f\x00\x04\x02"
    assert E._addr_key(ipaddress.ip_address("fd00::1")) == ipaddress.ip_address("fd00::1").packed


def test_a_full_policy_keeps_every_address_apart():
    ip4 = [bytes([10, 0, 0, i]) for i in range(P.MAX_ADDRS)]
    ip6 = [bytes([0xfd] + [0] * 14 + [i]) for i in range(P.MAX_ADDRS)]
    v = P.encode_policy(ip4, ip6, ip4[0], ip6[0], raw=False, owner=7)
    back = P.decode_policy(v)
    assert (back["ip4"], back["ip6"], back["owner"]) == (ip4, ip6, 7)
    assert P.IP4 + 4 * P.MAX_ADDRS <= P.IP6 and P.IP6 + 16 * P.MAX_ADDRS <= P.OWNER


def test_the_localhost_programs_assemble_and_their_storage_btf_describes_16_bytes():
    maps = P.Maps(3, 4, 5, 6, 7)
    for v6 in (False, True):
        assert 0 < len(P.getname(maps, v6=v6)) // 8 < 4096
    blob = P.localhost_btf()
    nelems = struct.unpack_from("<III", blob, 24 + 16 + 12)[2]
    assert nelems * 4 == P.LOCAL_STORE_SIZE == 16
