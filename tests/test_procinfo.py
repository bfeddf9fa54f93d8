from prisond.host.procinfo import parse_net_table

TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0102007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1
   1: 0102007F:A000 0900007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 4343 1
   2: 00000000:0000 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 0 1
"""

TCP6 = """\
  sl  local_address                         remote_address                        st tx_queue rx_queue
   0: 0000000000000000FFFF00000102007F:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 77 1
   1: 000000FD000000000000000001000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 78 1
"""


def test_ipv4_listen_and_connected():
    t = parse_net_table(TCP, "tcp", False)
    assert t[4242] == {"proto": "tcp", "local": "127.0.2.1:8080", "state": "listen"}
    assert t[4343]["state"] == "connected"
    assert 0 not in t


def test_ipv6_and_v4_mapped():
    t = parse_net_table(TCP6, "tcp", True)
    assert t[77]["local"] == "127.0.2.1:8080"
    assert t[78]["local"] == "[fd00::1]:80"
