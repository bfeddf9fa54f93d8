"""model/configfile.py: a reload parses only the prisons whose text changed, and its result is
always the one reading the whole file gives (the same prisons, the same problems, lines and all)."""
import random

import pytest

from prisond.model.config import parse
from prisond.model.configfile import ConfigFile, split
from prisond.model.errors import ConfigError

HEAD = "daemon:\n  kernel_layer: false\ndefaults:\n  stop: {timeout: 3}\n# the customers\nprisons:\n"


def body(n: int, edit=None) -> str:
    out = []
    for i in range(n):
        text = f"  p{i}:\n    hostname: p{i}.example.test\n    ip4: [10.1.{i // 250}.{i % 250 + 1}]\n" \
               f"    exec: {{start: 'sleep 100'}}\n"
        out.append(edit(i, text) if edit else text)
    return "".join(out)


def write(path, text):
    path.write_text(text)
    return path


def load_as_whole(cf: ConfigFile, f, text: str):
    """Write text, load it with cf, and check it gives what parsing the whole text gives: the
    configuration (returned), or the same problems (None)."""
    write(f, text)
    try:
        want = parse(text, str(f))
    except ConfigError as exc:
        with pytest.raises(ConfigError) as got:
            cf.load()
        assert got.value.message == exc.message
        return None
    assert cf.load() == want
    return want


def test_split_plain_layout():
    text = HEAD + "  a: {ip4: [10.0.0.1]}\n  # a comment\n\n  b:\n    ip4: [10.0.0.2]\nlisten: x\n"
    layout = split(text)
    assert layout is not None
    assert layout.head == HEAD
    assert layout.chunks == (("a", "  a: {ip4: [10.0.0.1]}\n  # a comment\n\n"), ("b", "  b:\n    ip4: [10.0.0.2]\n"))
    assert layout.tail == "listen: x\n"
    assert layout.head + "".join(t for _, t in layout.chunks) + layout.tail == text


@pytest.mark.parametrize("text", [
    "prisons: {a: {ip4: [10.0.0.1]}}\n",            # flow mapping
    "prisons:\n  'a': {ip4: [10.0.0.1]}\n",         # quoted name
    "prisons:\n  on: {ip4: [10.0.0.1]}\n",          # YAML 1.1 reads it as true
    "prisons:\n  1_000: {ip4: [10.0.0.1]}\n",       # ... and this as 1000
    "prisons:\n  - a\n",                            # a list
    "prisons:\n    a: {}\n  b: {}\n",               # less indented than the first
    "prisons:\n\ta: {}\n",                          # a tab
    "prisons:\n  a: {}\rprisons:\n  b: {}\n",       # a lone CR is a line break to YAML
    "prisons:\n  a: {}\nprisons:\n  b: {}\n",       # twice
])
def test_split_refuses_what_is_not_plain(text):
    assert split(text) is None


def test_one_changed_prison_is_the_only_one_parsed(tmp_path):
    f = write(tmp_path / "p.yaml", HEAD + body(300))
    cf = ConfigFile(str(f))
    first = cf.load()
    assert cf.parsed == 300
    write(f, HEAD + body(300, lambda i, t: t.replace("p7.example", "seven.example")))
    again = cf.load()
    assert cf.parsed == 1
    assert again == parse(f.read_text(), str(f))
    assert again.prison("p7").hostname == "seven.example.test"
    # the others are the very objects of the last load (the diff needs no field compared)
    assert all(a is b for a, b in zip(first.prisons, again.prisons) if a.name != "p7")


def test_other_keys_changed_means_the_whole_file(tmp_path):
    f = write(tmp_path / "p.yaml", HEAD + body(20))
    cf = ConfigFile(str(f))
    cf.load()
    write(f, HEAD.replace("timeout: 3", "timeout: 4") + body(20))
    c = cf.load()
    assert cf.parsed == 20 and all(p.stop_timeout == 4 for p in c.prisons)


def test_a_problem_is_reported_with_the_whole_files_lines(tmp_path):
    f = write(tmp_path / "p.yaml", HEAD + body(50))
    cf = ConfigFile(str(f))
    cf.load()
    bad = HEAD + body(50, lambda i, t: t.replace("10.1.0.31]", "10.1.0.300]") if i == 30 else t)
    write(f, bad)
    with pytest.raises(ConfigError) as got:
        cf.load()
    with pytest.raises(ConfigError) as whole:
        parse(bad, str(f))
    assert got.value.message == whole.value.message
    assert f"p.yaml:{HEAD.count(chr(10)) + 30 * 4 + 3}:" in got.value.message


def test_an_address_taken_by_a_changed_prison_is_found(tmp_path):
    """Only p9's text changed, but its new address is p3's: a problem between two prisons."""
    f = write(tmp_path / "p.yaml", HEAD + body(20))
    cf = ConfigFile(str(f))
    cf.load()
    write(f, HEAD + body(20, lambda i, t: t.replace("10.1.0.10]", "10.1.0.4, 10.1.0.10]")))
    with pytest.raises(ConfigError, match=r"p\.yaml:\d+: prisons\.p9\.ip4\[0\]: 10\.1\.0\.4 is also an address of prison 'p3'"):
        cf.load()


def test_duplicate_names_are_the_whole_files_error(tmp_path):
    f = write(tmp_path / "p.yaml", HEAD + body(5))
    cf = ConfigFile(str(f))
    cf.load()
    write(f, HEAD + body(5) + "  p2: {ip4: [10.9.0.1]}\n")
    with pytest.raises(ConfigError, match="duplicate prison 'p2'"):
        cf.load()


def test_anchors_in_prisons_mean_the_whole_file(tmp_path):
    """p1 borrows p0's exec through an anchor: change p0's text and p1 changes too."""
    text = HEAD + "  p0:\n    ip4: [10.0.0.1]\n    exec: &e {start: 'sleep 1'}\n  p1:\n    ip4: [10.0.0.2]\n    exec: *e\n"
    f = write(tmp_path / "p.yaml", text)
    cf = ConfigFile(str(f))
    cf.load()
    write(f, text.replace("sleep 1", "sleep 2"))
    c = cf.load()
    assert cf.parsed == 2 and c.prison("p1").exec.start is not None and "2" in str(c.prison("p1").exec.start)


def test_many_random_edits_give_what_the_whole_file_gives(tmp_path):
    """Prisons added, removed, moved, changed, commented, broken; after each, the loader's answer
    (a Config, or the problems) is the whole file's."""
    rnd = random.Random(7)
    f = tmp_path / "p.yaml"
    cf = ConfigFile(str(f))
    texts = [f"  p{i}:\n    ip4: [10.2.0.{i + 1}]\n" for i in range(40)]
    edits = [
        lambda t, i: t.replace("ip4", "hostname: h%d.test\n    ip4" % rnd.randrange(9)),
        lambda t, i: t + "    # note\n",
        lambda t, i: t.replace("ip4: [", f"ip4: [10.2.0.{rnd.randrange(1, 41)}, "),  # maybe another's
        lambda t, i: t.replace("ip4", "ip5"),                                       # unknown key
        lambda t, i: t.replace(":\n", ": {bad\n", 1),                               # broken YAML
        lambda t, i: t + "    limits: {pids: %d}\n" % rnd.randrange(1, 50),
        lambda t, i: t.replace(f"p{i}:", f"q{i}:"),                                  # renamed
    ]
    partial = errors = 0
    for _ in range(150):
        before = list(texts)
        i = rnd.randrange(len(texts))
        k = rnd.randrange(len(edits) + 2)
        if k == len(edits):
            texts.insert(rnd.randrange(len(texts) + 1), f"  n{rnd.randrange(1000)}:\n    ip4: [10.3.0.{rnd.randrange(1, 250)}]\n")
        elif k == len(edits) + 1 and len(texts) > 1:
            texts.pop(i)
        elif k < len(edits):
            texts[i] = edits[k](texts[i], i)
        want = load_as_whole(cf, f, HEAD + "".join(texts))
        if want is None:
            texts = before  # undone before going on
            errors += 1
            continue
        partial += cf.parsed < len(want.prisons)
    assert partial > 50 and errors > 20  # most loads parsed only what changed; many were refused


# what an outside review found: texts the cut took apart where YAML does not (each once gave
# a configuration other than the whole file's, or took a file the whole reading refuses)
ACROSS = [
    # b's quoted string, left open, runs on into the tail: `defaults:` is b's text, not a key
    ("prisons:\n  a:\n    hostname: a\n  b:\n    hostname: b\ndefaults: {stop: {timeout: 9}} #'\n",
     "prisons:\n  a:\n    hostname: a\n  b:\n    hostname: b\n    exec:\n      start: 'echo\n"
     "defaults: {stop: {timeout: 9}} #'\n"),
    # the same, already in the first file: the whole file refuses the second
    ("prisons:\n  a:\n    exec:\n      start: 'echo\ndefaults: {} #'\n",
     "prisons:\n  a:\n    exec:\n      start: 'echo\n  b:\n    exec: {env: {X: \"it's\"}}\ndefaults: {} #'\n"),
    # a line opening with U+FEFF: YAML skips it, and p0's body goes on below
    ("prisons:\n  p0:\n\ufeff\n    ip4: [127.5.0.1]\n    exec:\n      start: [sleep, '100']\n",
     "prisons:\n\ufeff\n    ip4: [127.5.0.1]\n    exec:\n      start: [sleep, '100']\n"),
    ("prisons:\n  p0:\n\ufeff\n    hostname: h.test\n    ip4: [127.5.0.1]\n",
     "prisons:\n  x1:\n  p0:\n\ufeff\n    hostname: h.test\n    ip4: [127.5.0.1]\n"),
]


@pytest.mark.parametrize("first,second", ACROSS)
def test_a_cut_yaml_does_not_make_gives_the_whole_files_answer(tmp_path, first, second):
    f = write(tmp_path / "p.yaml", first)
    cf = ConfigFile(str(f))
    try:
        cf.load()
    except ConfigError:
        pass
    load_as_whole(cf, f, second)


def test_an_alias_to_itself_is_a_configuration_error(tmp_path):
    """A mapping that holds itself (through an alias in its own anchor): a RecursionError and
    a traceback from prisonctl check before."""
    with pytest.raises(ConfigError, match=r"p\.yaml:3: defaults.exec.env.A: an alias refers to a collection it is in"):
        parse("defaults: &d\n  exec:\n    env: {A: *d}\nprisons: {}\n", "p.yaml")
