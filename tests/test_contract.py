"""One contract between the Python and the C side (prisond/model/contract.py): the header C
includes says what Python says, and the shim's proc.status question and its reading of the
daemon's flat replies round-trip (Python writes, C reads, and back)."""
import os
import subprocess

import pytest

from prisond.model import contract
from prisond.model.errors import PrisonError
from prisond.model.protocol import decode_request, reply_error, reply_ok

PROGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "progs")
CONSTANTS = sorted(n for n, v in vars(contract).items() if n.isupper() and isinstance(v, (int, str))
                   and n != "TYPE_CHECKING")


def header_dir(tmp_path) -> str:
    with open(tmp_path / "contract.h", "w") as fh:
        fh.write(contract.c_header())
    return str(tmp_path)


def test_the_header_says_what_python_says(tmp_path):
    src = tmp_path / "print.c"
    body = []
    for n in CONSTANTS:
        v = getattr(contract, n)
        fmt = "%d" if isinstance(v, int) else "%c" if len(v) == 1 else "%s"
        body.append(f'\tprintf("{n}={fmt}\\n", PD_{n});')
    src.write_text("#include <stdio.h>\n#include \"contract.h\"\nint main(void)\n{\n" + "\n".join(body) + "\n}\n")
    exe = tmp_path / "print"
    subprocess.run(["cc", "-Wall", "-Werror", "-I", header_dir(tmp_path), "-o", str(exe), str(src)], check=True)
    got = dict(line.split("=", 1) for line in subprocess.run([str(exe)], capture_output=True, text=True,
                                                               check=True).stdout.splitlines())
    assert got == {n: str(getattr(contract, n)) for n in CONSTANTS}


@pytest.fixture(scope="module")
def c_side(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("contract")
    exe = tmp / "contract_c"
    subprocess.run(["cc", "-std=gnu11", "-Wall", "-Wextra", "-Werror", "-Wno-unused-function", "-I",
                    header_dir(tmp), "-o", str(exe), os.path.join(PROGS, "contract_c.c"), "-ldl", "-lpthread"],
                   check=True)
    return str(exe)


TEXTS = ["Prison:\tweb1\nJID:\t3\nHostname:\tweb1.example.test\n", "a \\ backslash, \\n not a newline", "",
         "é ünïcode ✓", "x" * 1000]


def test_flat_replies_python_writes_c_reads(c_side):
    lines = [reply_ok(1, {"text": t}, flat=True) for t in TEXTS]
    lines.append(reply_error(1, PrisonError("no such process in this prison", "no_such_process"), flat=True))
    lines.append(reply_error(1, PrisonError("slow down", "busy"), flat=True))
    lines.append(reply_ok(1, {"text": "x"}))  # JSON: not what the shim asked for
    lines.append(b"ok unfinished \\q escape\n")
    out = subprocess.run([c_side, "flat"], input=b"".join(lines), capture_output=True, check=True).stdout
    got = out.decode().splitlines()
    assert got[:len(TEXTS)] == ["1 " + t.encode().hex() for t in TEXTS]
    assert got[len(TEXTS):] == ["0", "-1", "-1", "-1"]


def test_the_shims_request_is_read_as_flat(c_side):
    line = subprocess.run([c_side, "request", "4242"], capture_output=True, check=True).stdout
    req = decode_request(line)
    assert (req.method, req.params, req.flat) == ("proc.status", {"pid": 4242}, True)
    assert decode_request(line.replace(b',"flat":true', b"")).flat is False
