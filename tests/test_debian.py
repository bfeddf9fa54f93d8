"""What the Debian package ships says what the code does: prisond.yaml(5) lists exactly the
keys the configuration accepts, the man pages name every option and command, the shipped
configuration (and its commented example) is valid, and the versions agree.

The package itself, installed and run by systemd, is tested in tests/system."""
import os
import re
import subprocess
import sys

import pytest

from prisond.client.cli import USAGE
from prisond.model.config import parse
from prisond.model.errors import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAN = os.path.join(ROOT, "man")


def read(*path) -> str:
    with open(os.path.join(ROOT, *path)) as fh:
        return fh.read()


def documented_keys() -> dict[str, set[str]]:
    """prisond.yaml(5): `## LEVEL` sections, each with `*key:*` items."""
    out, level = {}, None
    for line in read("man", "prisond.yaml.5.scd").splitlines():
        if line.startswith("## "):
            level = line[3:].strip()
            out[level] = set()
        elif level and (m := re.match(r"^\*([a-z_0-9]+):\*", line)):
            out[level].add(m.group(1))
        elif line.startswith("# "):
            level = None
    return out


# Each level, as a document with an unknown key there: the error lists the known keys.
PROBES = {
    "top level": "zz_unknown: 1\n",
    "daemon": "daemon: {zz_unknown: 1}\n",
    "prisons.NAME": "prisons: {p: {zz_unknown: 1}}\n",
    "prisons.NAME.exec": "prisons: {p: {exec: {zz_unknown: 1}}}\n",
    "prisons.NAME.stop": "prisons: {p: {stop: {zz_unknown: 1}}}\n",
    "prisons.NAME.allow": "prisons: {p: {allow: {zz_unknown: 1}}}\n",
    "prisons.NAME.mounts[]": "prisons: {p: {path: /r, mounts: [{source: /a, zz_unknown: 1}]}}\n",
    "prisons.NAME.limits": "prisons: {p: {limits: {zz_unknown: 1}}}\n",
    "prisons.NAME.restart": "prisons: {p: {restart: {zz_unknown: 1}}}\n",
}


def accepted_keys(doc: str) -> set[str]:
    with pytest.raises(ConfigError) as err:
        parse(doc, "probe.yaml")
    (known,) = re.findall(r"zz_unknown: unknown key \(known: ([^)]*)\)", err.value.message)
    return set(known.split(", "))


@pytest.mark.parametrize("level", sorted(PROBES))
def test_the_man_page_lists_exactly_the_accepted_keys(level):
    assert documented_keys().get(level) == accepted_keys(PROBES[level]), level


def test_every_level_of_the_man_page_is_checked():
    assert set(documented_keys()) == set(PROBES)


def test_defaults_take_the_prison_keys_but_the_addresses_and_hostname():
    assert accepted_keys("defaults: {zz_unknown: 1}\n") == \
        accepted_keys(PROBES["prisons.NAME"]) - {"hostname", "ip4", "ip6"}


def test_the_shipped_configuration_and_its_example_are_valid():
    text = read("debian", "prisond.yaml")
    assert parse(text, "prisond.yaml").prisons == ()
    # the commented daemon settings, defaults and prison, uncommented, in place of `prisons: {}`
    lines = [line[2:] for line in text.splitlines()
             if re.match(r"^# ( *[a-z_0-9]+:|  +- )", line)]
    config = parse("\n".join(lines) + "\n", "example")
    assert [p.name for p in config.prisons] == ["web1"] and config.daemon.cgroup_parent == "prisond"


def test_the_package_version_is_the_project_version():
    changelog = read("debian", "changelog").splitlines()[0]
    version = re.match(r"prisond \(([^)]+)\)", changelog).group(1)
    project = re.search(r'^version = "([^"]+)"', read("pyproject.toml"), re.M).group(1)
    assert version == project  # a native package: no Debian revision


def test_prisond_8_names_every_option():
    help_text = subprocess.run([sys.executable, "-m", "prisond", "--help"], capture_output=True, text=True,
                               check=True).stdout
    page = read("man", "prisond.8.scd")
    for opt in set(re.findall(r"(?<![\w-])(--[a-z][a-z-]+)", help_text)) - {"--help"}:
        assert f"*{opt}*" in page, opt


def test_prisonctl_8_and_the_completion_name_every_command():
    commands = {c for group in re.findall(r"^  ([a-z|]+) ", USAGE, re.M) for c in group.split("|")}
    page = read("man", "prisonctl.8.scd")
    completion = read("completions", "prisonctl")
    (listed,) = re.findall(r'local commands="([^"]+)"', completion)
    assert commands == set(listed.split())
    for cmd in commands:
        assert re.search(rf"(^|, )\*{cmd}\*( |$)", page, re.M), cmd


def test_the_completion_is_valid_bash():
    subprocess.run(["bash", "-n", os.path.join(ROOT, "completions", "prisonctl")], check=True)
