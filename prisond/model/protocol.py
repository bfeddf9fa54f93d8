"""The control protocol: JSON lines over a unix stream socket.  Pure: bytes in, dicts out.

Request:  {"v": 1, "id": 7, "method": "prison.show", "params": {"name": "web1"}}
Reply:    {"v": 1, "id": 7, "ok": true, "result": {...}}
          {"v": 1, "id": 7, "ok": false, "error": {"code": "no_such_prison", "message": "..."}}

prison.exec is answered twice: first {"pid", "tty"} with descriptors attached (SCM_RIGHTS: the
master of the command's terminal, or the other ends of its stdin, stdout and stderr; then a
lifeline the client keeps open: when it closes, the command is hung up), then,
when the command ends, {"exit": N} or {"signal": N}.  Meanwhile the client may send
exec.signal {"signal": N} on the same connection.  Its argv and env values are strings, or
{"b": BASE64} for bytes that are not UTF-8.  A command that cannot be run is an error
with code exec_failed and "status" (126 or 127), what prisonctl exec exits with.

Every request carries the protocol version; a server answers one it does not speak with
``bad_version``.  Lines are bounded by MAX_LINE.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from prisond.model import contract
from prisond.model.errors import PrisonError, ProtocolError

orjson: Any
try:  # several times faster both ways; the stdlib's where it is missing
    import orjson
except ImportError:  # pragma: no cover (Debian 12 has no python3-orjson)
    orjson = None

VERSION = contract.PROTOCOL_VERSION
MAX_LINE = 64 * 1024

METHODS = frozenset({
    "daemon.health", "daemon.reload", "daemon.metrics",
    "prison.list", "prison.show", "prison.ps", "prison.which",
    "prison.start", "prison.stop", "prison.restart", "prison.exec", "proc.status", "prison.events", "prison.logs",
    "exec.signal",
})
# asked on a connection while its prison.exec runs (see api.ExecSession)
SESSION_METHODS = frozenset({"exec.signal"})
READ_ONLY = frozenset({"daemon.health", "daemon.metrics", "prison.list", "prison.show", "prison.ps", "prison.which",
                       "proc.status", "prison.events"})
# all a process inside a prison may ask, root included: its shim's questions about its own prison
JAILED_OK = frozenset({"daemon.health", "proc.status"})


@dataclass
class Request:
    id: object
    method: str
    params: dict = field(default_factory=dict)
    flat: bool = False  # answer in the contract's flat form (C clients; contract.py)


def decode_request(line: bytes) -> Request:
    """Parse one request line; raise ProtocolError with the id when one could be read."""
    try:
        msg = orjson.loads(line) if orjson else json.loads(line)
    except (ValueError, UnicodeDecodeError):
        raise ProtocolError("request is not valid JSON", "bad_json") from None
    if not isinstance(msg, dict):
        raise ProtocolError("request must be a JSON object", "bad_request")
    rid = msg.get("id")
    if (not isinstance(rid, (int, str)) and rid is not None) or isinstance(rid, bool) or \
            (isinstance(rid, int) and not -2**63 <= rid < 2**63):
        rid = None
    err = None
    if msg.get("v") != VERSION:
        err = ProtocolError(f"protocol version {msg.get('v')!r} not supported (this daemon speaks {VERSION})",
                            "bad_version")
    elif not isinstance(msg.get("method"), str):
        err = ProtocolError("request needs a string 'method'", "bad_request")
    elif msg["method"] not in METHODS:
        err = ProtocolError(f"unknown method {msg['method'][:64]!r}", "unknown_method")
    elif not isinstance(msg.get("params", {}), dict):
        err = ProtocolError("'params' must be an object", "bad_request")
    if err:
        err.request_id = rid
        raise err
    return Request(rid, msg["method"], msg.get("params") or {}, msg.get("flat") is True)


def request(rid, method: str, params: dict | None = None) -> bytes:
    return encode({"v": VERSION, "id": rid, "method": method, "params": params or {}})


def reply_ok(rid, result, flat: bool = False) -> bytes:
    if flat:
        return contract.flat_ok(str(result.get("text", "")) if isinstance(result, dict) else str(result)).encode()
    return encode({"v": VERSION, "id": rid, "ok": True, "result": result})


def reply_error(rid, exc: PrisonError, flat: bool = False) -> bytes:
    if flat:
        return contract.flat_err(exc.code).encode()
    body = {"code": exc.code, "message": exc.message}
    details = getattr(exc, "problems", None)
    if details:
        body["problems"] = details
    status = getattr(exc, "exit_status", None)
    if status is not None:  # a command that could not be run: what prisonctl exec exits with
        body["status"] = status
    return encode({"v": VERSION, "id": rid, "ok": False, "error": body})


def encode(obj) -> bytes:
    if orjson:
        return orjson.dumps(obj) + b"\n"
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


def param(req: Request, key: str, kind=str, required: bool = True):
    value = req.params.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ProtocolError(f"parameter {key!r} must be a {kind.__name__}", "bad_request")
    return value
