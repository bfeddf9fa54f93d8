"""The records the daemon and a prison's init exchange (host/initlink.py, native/jail/msg.c):
the pure encoding, both ways."""
import pytest

from prisond.host.initlink import MSG_MAX, decode, encode


def test_records_round_trip_in_order_with_repeated_keys():
    recs = [("id", "svc.1"), ("arg", "sh"), ("arg", "-c"), ("arg", "echo 'a=b'"), ("env", "X=1=2"), ("arg", "")]
    data = encode("spawn", recs)
    assert data.startswith(b"op=spawn\0") and data.endswith(b"\0")
    assert decode(data) == ("spawn", recs)


def test_bytes_that_are_not_utf8_survive():
    arg = b"\xff\xfename".decode("utf-8", "surrogateescape")
    assert decode(encode("spawn", [("arg", arg)])) == ("spawn", [("arg", arg)])


def test_a_nul_in_a_value_and_an_oversized_message_are_refused():
    with pytest.raises(ValueError, match="NUL"):
        encode("spawn", [("arg", "a\0b")])
    with pytest.raises(ValueError, match="over"):
        encode("spawn", [("arg", "x" * MSG_MAX)])


def test_a_log_messages_data_is_raw_to_the_end_of_the_packet():
    data = b"op=log\0stream=out\0data=line one\nkey=not a record\0tail"
    assert decode(data) == ("log", [("stream", "out"), ("data", b"line one\nkey=not a record\0tail")])


def test_records_without_an_equals_sign_are_skipped_as_in_c():
    assert decode(b"op=exit\0junk\0id=a\0status=0\0") == ("exit", [("id", "a"), ("status", "0")])
