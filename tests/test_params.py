"""One table of configuration keys (model/params.py): validation takes its keys from it, and
prisond.yaml(5) and the README say what it says."""
import os

from prisond.model.config import ALLOW_FLAGS, EXEC_HOOKS, parse
from prisond.model.errors import ConfigError
from prisond.model.params import PARAMS, keys, man_text

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read(path: str) -> str:
    with open(os.path.join(ROOT, path)) as fh:
        return fh.read()


def test_the_man_page_lists_exactly_the_table():
    page = read("man/prisond.yaml.5.scd")
    assert man_text() in page, "man/prisond.yaml.5.scd: regenerate its keys from prisond.model.params.man_text()"
    listed = {line.split(":*")[0].strip("*") for line in page.splitlines() if line.startswith("*") and ":*" in line}
    assert listed == {p.key for p in PARAMS}


def test_the_readmes_configuration_names_every_key():
    text = read("README.md")
    section = text[text.index("## Configuration"):text.index("## Limits and accounting")]
    assert [p.key for p in PARAMS if f"{p.key}:" not in section] == []


def test_every_key_is_documented_and_the_code_s_lists_come_from_the_table():
    assert all(p.doc for p in PARAMS)
    assert set(ALLOW_FLAGS) == keys("prisons.NAME.allow") and set(EXEC_HOOKS) <= keys("prisons.NAME.exec")
    assert len({(p.section, p.key) for p in PARAMS}) == len(PARAMS)


def test_a_key_the_table_lacks_is_refused_at_every_level():
    for section, yaml in [("", "nonsense: 1\n"), ("daemon", "daemon: {nonsense: 1}\n"),
                          ("prisons.NAME", "prisons: {a: {nonsense: 1}}\n"),
                          ("prisons.NAME.exec", "prisons: {a: {exec: {nonsense: 1}}}\n"),
                          ("prisons.NAME.limits", "prisons: {a: {limits: {nonsense: 1}}}\n"),
                          ("prisons.NAME.allow", "prisons: {a: {allow: {nonsense: true}}}\n")]:
        try:
            parse(yaml, "t.yaml")
        except ConfigError as exc:
            assert "nonsense: unknown key" in exc.message and ", ".join(sorted(keys(section))) in exc.message, \
                exc.message
        else:
            raise AssertionError(f"{section}: an unknown key was accepted")
