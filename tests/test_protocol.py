import json

import pytest

from prisond.client import connection as client
from prisond.model import protocol
from prisond.model.errors import NoSuchPrison, ProtocolError


def test_round_trip():
    req = protocol.decode_request(protocol.request(3, "prison.show", {"name": "a"}))
    assert (req.id, req.method, req.params) == (3, "prison.show", {"name": "a"})
    ok = json.loads(protocol.reply_ok(3, {"x": 1}))
    assert ok == {"v": 1, "id": 3, "ok": True, "result": {"x": 1}}
    err = json.loads(protocol.reply_error(3, NoSuchPrison("zz")))
    assert err["error"] == {"code": "no_such_prison", "message": "no such prison: zz"}


@pytest.mark.parametrize("line,code", [
    (b"nonsense", "bad_json"),
    (b"\xff\xfe", "bad_json"),
    (b"42", "bad_request"),
    (b'{"v":2,"method":"prison.list"}', "bad_version"),
    (b'{"v":1,"method":3}', "bad_request"),
    (b'{"v":1,"method":"rm -rf"}', "unknown_method"),
    (b'{"v":1,"method":"prison.list","params":"x"}', "bad_request"),
])
def test_bad_requests(line, code):
    with pytest.raises(ProtocolError) as exc:
        protocol.decode_request(line)
    assert exc.value.code == code


def test_client_and_server_speak_the_same_version():
    assert client.VERSION == protocol.VERSION


def test_read_only_methods_are_methods():
    assert protocol.READ_ONLY <= protocol.METHODS
