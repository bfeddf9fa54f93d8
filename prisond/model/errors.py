"""prisond's exceptions: one tree, each with a string code that travels over the control socket.

    PrisonError                 internal, broken (a connection the daemon gave up on)
     ├── ConfigError            config_invalid    (carries the list of problems)
     ├── ProtocolError          bad_json, bad_request, too_large, bad_version, unknown_method
     ├── NoSuchPrison           no_such_prison
     ├── NoSuchProcess          no_such_process
     ├── StateConflict          not_running, already_running, busy
     ├── Busy (host/lock.py)    busy              (another daemon holds the lock)
     ├── PermissionDenied       permission_denied
     └── SystemLayerError       system_error, net_error, cgroup_error, exec_failed, init_gone,
          │                     kernel_unavailable, limit_unavailable, limit_error
          └── KernelLayerError  kernel_error      (kernel/syscall.py)

OS and netlink errors are translated into these at the module that meets them.
"""
from __future__ import annotations


class PrisonError(Exception):
    code = "internal"
    request_id: object = None  # the request it answers, where one could be read (protocol.py)

    def __init__(self, message: str, code: str | None = None):
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self)


class ConfigError(PrisonError):
    code = "config_invalid"

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class ProtocolError(PrisonError):
    code = "bad_request"


class NoSuchPrison(PrisonError):
    code = "no_such_prison"

    def __init__(self, name: str):
        super().__init__(f"no such prison: {name}")


class NoSuchProcess(PrisonError):
    code = "no_such_process"


class StateConflict(PrisonError):
    code = "not_running"


class PermissionDenied(PrisonError):
    code = "permission_denied"


class SystemLayerError(PrisonError):
    code = "system_error"
