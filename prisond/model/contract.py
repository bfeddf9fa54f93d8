"""The contract between prisond's Python and its C programs (the shim, prisonjail): every
name, limit, letter and path both sides must agree on, written once.

setup.py writes the C header from this file at build time (``contract.h``, see ``c_header``),
so nothing here is spelt again in C.  Standard library only: the build reads it before prisond
is installed.

The shim's policy, in the environment variable POLICY_VAR, parsed once by the shim at load::

    1;n=NAME;h=HOSTNAME;4=A,B;6=A,B;f=FLAGS[;s=SOCKET]

4= and 6= list at most MAX_ADDRESSES each (the first is the prison's primary); f= holds
FLAG_* letters; s= is the daemon's socket for prisons (the shim asks it for /proc/PID/status;
its events socket, EVENTS_SOCKET, is beside it).  Keys the shim does not know (n=) are for
people.  The shim keeps the policy, with LD_PRELOAD, across exec.

prisonjail init --allow takes the ALLOW_* letters.

What the daemon answers a C client (the shim) that asks in FLAT form (a request with
"flat": true) is one line, never JSON::

    ok TEXT          TEXT: the result's text, with backslash, newline and tab escaped (\\\\ \\n \\t)
    err CODE         CODE: one of errors.py's codes (no_such_process, ...)
"""
from __future__ import annotations

POLICY_VAR = "PRISOND_POLICY"
POLICY_VERSION = "1"
POLICY_MAX = 4096           # bytes of the policy string
MAX_ADDRESSES = 16          # per family and prison: what the kernel layer's policy map holds
HOSTNAME_MAX = 64           # Linux's HOST_NAME_MAX

# the policy's f= letters
FLAG_RAW = "r"              # allow.raw_sockets
FLAG_ANYAF = "a"            # allow.socket_af
FLAG_KERNEL = "k"           # the kernel layer is in force (the shim leaves the network to it)

# prisonjail init --allow letters
ALLOW_RAW = "r"             # allow.raw_sockets: CAP_NET_RAW kept
ALLOW_ANYAF = "a"           # allow.socket_af
ALLOW_URING = "u"           # allow.io_uring

RUNTIME_DIR = "/run/prisond"
CONTROL_SOCKET = RUNTIME_DIR + "/control.sock"   # the operators' socket
PRISON_SOCKET = "prison.sock"                    # in the runtime dir's public/: prisons' questions
EVENTS_SOCKET = "events.sock"                    # beside it: the shims' reports
PY_PRISONCTL = "/usr/local/lib/prisond/prisonctl.py"  # the C prisonctl hands other commands to it
SERVICE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

FLAT_MAX = 2048             # bytes of a flat reply line the shim reads

# the control protocol as the C prisonctl speaks it (protocol.py is the Python side)
PROTOCOL_VERSION = 1
CTL_REPLY_MAX = 65536       # bytes of one reply line prisonctl exec reads
SOCKET_ENV = "PRISOND_SOCKET"  # names the control socket for prisonctl (both)
# prisonctl's exit statuses (both): sysexits where one fits
EX_ERROR, EX_USAGE, EX_UNAVAILABLE, EX_NOPERM = 1, 2, 69, 77

# the records the daemon and a prison's init exchange (host/initlink.py, native/jail/msg.c)
INIT_MSG_MAX = 128 * 1024   # bytes of one packet
INIT_MSG_FDS = 250          # descriptors with one packet
MAX_ARGS = 4096             # arguments of a command started in a prison
MAX_ENV = 4096              # environment strings of one
MAX_CGROUPS = 16            # cgroups an init joins (v2, and the v1 controllers' own)
# an isolated prison's mount target missing on the host is made only under these (its private
# directories; confine.c's isolate, and check --host)
MADE_UNDER_RUN, MADE_UNDER_TMP, MADE_UNDER_VAR_TMP = "run/", "tmp/", "var/tmp/"
# where a start failed (init's "error stage=N"): spawn.c's order
STAGE_USER, STAGE_IDS, STAGE_CWD, STAGE_LIMIT, STAGE_TTY, STAGE_EXEC = 1, 2, 3, 4, 5, 6


def flat_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t")


def flat_ok(text: str) -> str:
    return f"ok {flat_escape(text)}\n"


def flat_err(code: str) -> str:
    return f"err {code}\n"


def c_header() -> str:
    """The header the C programs include: every constant above, as C spells it."""
    lines = ["/* Written by setup.py from prisond/model/contract.py: edit that, not this. */",
             "#ifndef PRISOND_CONTRACT_H", "#define PRISOND_CONTRACT_H"]
    for name, value in sorted(globals().items()):
        if not name.isupper():
            continue
        if isinstance(value, int):
            lines.append(f"#define PD_{name} {value}")
        elif isinstance(value, str) and len(value) == 1:
            lines.append(f"#define PD_{name} '{value}'")
        elif isinstance(value, str):
            lines.append(f'#define PD_{name} "{value}"')
    lines += ["#define PD_STR_(x) #x", "#define PD_STR(x) PD_STR_(x) /* a number as a string literal */", "#endif"]
    return "\n".join(lines) + "\n"
