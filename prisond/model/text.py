"""Text from prisons, made safe to print: no terminal control sequence may reach an operator.

Process names and arguments, service output and anything else a prison controls can carry
escape sequences (ESC, CSI as a C1 byte, OSC title and clipboard writes, BEL, ...).  Every
character that is not printable is shown as a Python-style escape instead.  Pure.
"""
from __future__ import annotations

import re

_UNSAFE = re.compile(r"[^\t -~\u00a0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"  # C0, DEL, C1, lone surrogates
                     r"|[\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")  # separators, bidi controls


def _escape(m: re.Match) -> str:
    c = m.group()
    n = ord(c)
    return f"\\x{n:02x}" if n < 0x100 else f"\\u{n:04x}"


def printable(text: str) -> str:
    """text with every control character (C0 but tab, DEL, C1, bidi overrides, line and
    paragraph separators) and every lone surrogate escaped."""
    return _UNSAFE.sub(_escape, text)
