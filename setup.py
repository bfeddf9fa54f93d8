"""Builds the LD_PRELOAD shim as part of `pip install`.

The shim is a plain shared library, not a Python extension, so it is compiled with its own
flags (-Wall -Wextra -Werror, hidden visibility, a version script exporting only the wrapped
symbols) instead of the interpreter's CFLAGS.
"""
import glob
import os
import shlex
import subprocess

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

CONTRACT = "prisond/model/contract.py"  # what both sides agree on: its C header is written here

SHIM_SRC = "prisond/native/shim/prisonshim.c"
SHIM_MAP = "prisond/native/shim/prisonshim.map"
JAIL_SRC = sorted(glob.glob("prisond/native/jail/*.c"))
JAIL_FLAGS = ["-std=gnu11", "-O2", "-g", "-static", "-Wall", "-Wextra", "-Werror"]
SHIM_FLAGS = ["-std=gnu11", "-O2", "-g", "-fPIC", "-shared", "-Wall", "-Wextra", "-Werror",
              "-fvisibility=hidden", "-D_FORTIFY_SOURCE=2"]


def sanitizers(jail: bool) -> list[str]:
    """PRISOND_SANITIZE=address,undefined: a build for CI's sanitizer run (.ci/run).  prisonjail
    then links dynamically (the sanitizers' runtimes are shared); the shim gets what a library
    preloaded into any program can carry, UBSan (ASan must be a program's first library).  Every
    finding aborts (-fno-sanitize-recover), so a test sees it."""
    wanted = [s for s in os.environ.get("PRISOND_SANITIZE", "").split(",") if s]
    if not jail:
        wanted = [s for s in wanted if s != "address"]
    if not wanted:
        return []
    return [f"-fsanitize={','.join(wanted)}", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"]


def env_flags() -> list[str]:
    """$CPPFLAGS $CFLAGS $LDFLAGS, after the project's own flags, as make's rules take them: what
    a distribution's build passes (Debian's dpkg-buildflags: hardening, relro, debug prefix maps)
    reaches both programs.  Unset, nothing changes."""
    return [f for name in ("CPPFLAGS", "CFLAGS", "LDFLAGS") for f in shlex.split(os.environ.get(name, ""))]


class BuildShim(build_ext):
    """The shim (a shared library) and prisonjail (a static program: nothing for LD_PRELOAD to
    reach, nothing needed from a prison's root)."""

    def get_ext_filename(self, fullname):
        path = os.path.join(*fullname.split("."))
        return path if fullname.endswith("prisonjail") else path + ".so"

    def contract_dir(self) -> str:
        """contract.h, written from prisond/model/contract.py (read as a file: prisond is not
        installed yet), into the build's temporary directory."""
        spec: dict = {}
        with open(CONTRACT) as fh:
            exec(compile(fh.read(), CONTRACT, "exec"), spec)
        os.makedirs(self.build_temp, exist_ok=True)
        with open(os.path.join(self.build_temp, "contract.h"), "w") as fh:
            fh.write(spec["c_header"]())
        return self.build_temp

    def build_extension(self, ext):
        out = self.get_ext_fullpath(ext.name)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        cc = shlex.split(os.environ.get("CC", "cc")) + ["-I", self.contract_dir()]
        if ext.name.endswith("prisonjail"):
            flags = JAIL_FLAGS + sanitizers(jail=True)
            if os.environ.get("PRISOND_SANITIZE"):
                flags = [f for f in flags if f != "-static"]
            cmd = cc + flags + env_flags() + ["-o", out, *JAIL_SRC]
        else:
            cmd = cc + SHIM_FLAGS + sanitizers(jail=False) + env_flags() + [
                f"-Wl,--version-script={SHIM_MAP}", "-o", out, SHIM_SRC, "-ldl", "-lpthread"]
        print(" ".join(cmd))
        subprocess.check_call(cmd)


setup(
    ext_modules=[Extension("prisond.libprisonshim", sources=[SHIM_SRC]),
                 Extension("prisond.prisonjail", sources=JAIL_SRC)],
    cmdclass={"build_ext": BuildShim},
)
