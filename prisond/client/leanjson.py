"""JSON for the client's hot path, on CPython's C accelerator alone.

`import json` pulls in `re` and `enum`, tens of milliseconds on a slow VM, on the path of
every `prisonctl exec`.  Decoding here is CPython's own C scanner (the one json.loads uses);
encoding covers what a request holds: dicts, lists, strings, numbers, booleans and null.
"""
from __future__ import annotations

import _json

TYPE_CHECKING = False  # not typing's: importing typing is what this module avoids
if TYPE_CHECKING:
    from typing import ClassVar


class _Context:
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = float  # NaN, Infinity, -Infinity
    memo: ClassVar[dict] = {}


_scan = _json.make_scanner(_Context())  # type: ignore[arg-type]  # the scanner takes any object with its attributes
_WS = " \t\n\r"


def loads(text: str):
    """Decode one JSON document; ValueError if it is not one."""
    start = len(text) - len(text.lstrip(_WS))
    try:
        obj, end = _scan(text, start)
    except StopIteration:
        raise ValueError("not JSON") from None
    if text[end:].strip(_WS):
        raise ValueError("extra data after JSON")
    return obj


def dumps(obj) -> str:
    if isinstance(obj, str):
        return _json.encode_basestring_ascii(obj)
    if obj is None:
        return "null"
    if obj is True:
        return "true"
    if obj is False:
        return "false"
    if isinstance(obj, int):
        return int.__repr__(obj)
    if isinstance(obj, float):
        if obj != obj or obj in (float("inf"), float("-inf")):
            raise ValueError("NaN and infinities are not JSON")
        return float.__repr__(obj)
    if isinstance(obj, dict):
        parts = []
        for k, v in obj.items():
            if not isinstance(k, str):
                raise TypeError("JSON object keys must be strings")
            parts.append(_json.encode_basestring_ascii(k) + ":" + dumps(v))
        return "{" + ",".join(parts) + "}"
    if isinstance(obj, (list, tuple)):
        return "[" + ",".join(dumps(v) for v in obj) + "]"
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")
