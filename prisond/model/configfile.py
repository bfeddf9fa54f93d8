"""The configuration file, read again at each reload: only the prisons whose text changed are
parsed and checked again.

A provider with 10,000 prisons changes one and reloads: reading and checking the whole file
again costs 1.5 s (YAML 0.9 s, the checks 0.6 s) and the daemon answers nobody meanwhile.  A
prison's spec is a pure function of its own text and of the file's other top-level keys
(daemon:, defaults:), so it is kept, by its text, from the last load; what involves several
prisons (an address held twice, a path inside another prison's root) is checked again in full.

Only a plain layout is taken apart: a `prisons:` line at the left margin, each prison's key one
indent in, its body below or on that line.  Anything else (a flow mapping of prisons, quoted
names, anchors in the prisons) is read whole, as is any file with a problem: the whole file's
reading names every problem with its line, as before.  The first load is always a whole one.
"""
from __future__ import annotations

import functools
import itertools
import re
import threading
from dataclasses import dataclass

import yaml

from prisond.model.config import Config, PrisonSpec, cross_problems, parse_source, read_text
from prisond.model.errors import ConfigError
from prisond.model.yamlsrc import Source

_PRISONS_LINE = re.compile(r"\nprisons:[ \t]*(?:#[^\r\n]*)?\r?(?=\n|\Z)")
_TOP_LINE = re.compile(r"\n[^ \t#\r\n]")  # a key at the left margin (not a comment, not blank)
_TAB = re.compile(r"\n *\t")
_CONTENT = re.compile(r"\n( *)[^ #\r\n]")
_LONE_CR = re.compile(r"\r(?!\n)")  # a line break to YAML: cut at "\n" only, such a file is read whole
_KEY = re.compile(r"([A-Za-z0-9][A-Za-z0-9_-]{0,62}):(?=[ \t\r\n]|$)")
_RESOLVER = yaml.resolver.Resolver()
_STR = "tag:yaml.org,2002:str"


@dataclass(frozen=True)
class Layout:
    head: str  # up to and with the `prisons:` line (and comments before the first prison)
    tail: str  # the top-level keys after the prisons
    chunks: tuple[tuple[str, str], ...]  # (name, text): a prison's lines, with the comments below it


def split(text: str) -> Layout | None:
    """The file cut at each prison, or None where its layout is not the plain one.  Regular
    expressions over the whole text, each starting at a newline (the engine jumps from one to
    the next), not a loop over its lines: 10,000 prisons of ten lines."""
    if ("\r" in text and _LONE_CR.search(text)) or any(c in text for c in "\x85\u2028\u2029"):
        return None
    t = "\n" + text  # every line starts after a newline
    if len(_PRISONS_LINE.findall(t)) != 1:
        return None
    m = _PRISONS_LINE.search(t)
    assert m is not None
    top = _TOP_LINE.search(t, m.end())
    end = top.start() + 1 if top else len(t)  # past the newline before the next top-level key
    region = t[m.end():end]  # from the newline ending `prisons:`: each line comes after a newline
    if _TAB.search(region):
        return None  # YAML has no tabs in indentation: its own error
    content = _CONTENT.search(region)
    if content is None:
        return Layout(t[1:end], t[end:], ())
    n = len(content[1])
    if n > 1 and _less_indented(n).search(region):
        return None
    starts = [k.start() + 1 for k in _at_indent(n).finditer(region)] + [len(region)]
    chunks = []
    for a, b in itertools.pairwise(starts):
        key = _KEY.match(region, a + n)
        if not key or not _plain_name(key[1]):
            return None  # a quoted name, a list, or a name YAML reads as a number or a boolean
        chunks.append((key[1], region[a:b]))
    return Layout(t[1:m.end()] + region[:starts[0]], t[end:], tuple(chunks))


def cut_where_yaml_cuts(src: Source, layout: Layout) -> bool:
    """Whether YAML's own reading of the text (src) has its top-level keys on exactly the lines
    at the left margin of the head and the tail, and its prisons' keys on exactly the first
    lines of the cut's pieces.  Then each piece is one prison's whole text and nothing else:
    no quoted string runs on into the next piece or into the tail, no line the cut took for a
    key is something else to YAML (a line opening with U+FEFF, which YAML skips), and a
    piece read with other pieces around it reads the same."""
    line = layout.head.count("\n") + 1
    starts = []
    for _, text in layout.chunks:
        starts.append(line)
        line += text.count("\n")
    tops = set(_margin_lines(layout.head, 1)) | set(_margin_lines(layout.tail, line))
    yaml_tops, yaml_prisons = set(), []
    for path, n in src.lines.items():
        if len(path) == 1:
            yaml_tops.add(n)
        elif len(path) == 2 and path[0] == "prisons":
            yaml_prisons.append(n)
    return yaml_tops == tops and sorted(yaml_prisons) == starts


def _margin_lines(text: str, first: int) -> list[int]:
    """The lines (numbered from first) of text that open at the left margin with something
    other than a comment."""
    t = "\n" + text
    out, line, pos = [], first - 1, 0
    for m in _TOP_LINE.finditer(t):
        line += t.count("\n", pos, m.start() + 1)
        pos = m.start() + 1
        out.append(line)
    return out


@functools.lru_cache(maxsize=1 << 16)
def _plain_name(name: str) -> bool:
    """YAML reads the key as this very string (not 1_000 or on)."""
    return not name.isdigit() and _RESOLVER.resolve(yaml.ScalarNode, name, (True, False)) == _STR


@functools.lru_cache(maxsize=64)
def _at_indent(n: int) -> re.Pattern:
    return re.compile(rf"\n {{{n}}}(?=[^ #\r\n])")


@functools.lru_cache(maxsize=64)
def _less_indented(n: int) -> re.Pattern:
    return re.compile(rf"\n {{1,{n - 1}}}[^ #\r\n]")


@dataclass(frozen=True)
class _Last:
    head: str
    tail: str
    config: Config
    by_text: dict  # a prison's text -> its spec


class ConfigFile:
    """load() the file at path; from the second load on, as said above.  Thread-safe (a
    reload runs in a worker thread)."""

    def __init__(self, path: str):
        self.path = path
        self._lock = threading.Lock()
        self._last: _Last | None = None
        self.parsed = 0  # prisons parsed by the last load (what the tests look at)

    def load(self) -> Config:
        text = read_text(self.path)
        with self._lock:
            layout = split(text)
            config = self._again(layout) if layout is not None and self._last is not None else None
            if config is None:
                self._last = None
                config, src = parse_source(text, self.path)  # ConfigError: nothing is remembered
                self.parsed = len(config.prisons)
                self._remember(layout, config, src)
            else:
                self._remember(layout, config, None)
            return config

    def _again(self, layout: Layout) -> Config | None:
        """The configuration from the prisons' texts, parsing only the new ones; None when the
        whole file must be read (other keys changed, a problem, an anchor)."""
        last = self._last
        assert last is not None
        if layout.head != last.head or layout.tail != last.tail:
            return None
        names = [name for name, _ in layout.chunks]
        if len(set(names)) != len(names) or any("&" in t for _, t in layout.chunks):
            return None
        specs: list[PrisonSpec] = []
        parsed = 0
        for name, chunk in layout.chunks:
            spec = last.by_text.get(chunk)
            if spec is None:
                alone = Layout(layout.head, layout.tail, ((name, chunk),))
                try:
                    one, src = parse_source(layout.head + chunk + layout.tail, self.path)
                except ConfigError:
                    return None
                if (len(one.prisons) != 1 or one.prisons[0].name != name or one.daemon != last.config.daemon
                        or not cut_where_yaml_cuts(src, alone)):
                    return None
                spec, parsed = one.prisons[0], parsed + 1
            specs.append(spec)
        if cross_problems(specs):
            return None
        self.parsed = parsed
        return Config(source=self.path, prisons=tuple(specs), daemon=last.config.daemon)

    def _remember(self, layout: Layout | None, config: Config, src: Source | None) -> None:
        """Keep each prison's spec by its text.  After a whole read (src: its YAML), only when
        the texts and the specs are known to pair up: as many prisons as keys at the prisons'
        indent, in the same order, YAML's keys on the lines of the cuts, and no anchor a
        prison's text could lend another.  After _again (src None) they were, piece by piece."""
        if layout is None or (src is not None and (
                len(layout.chunks) != len(config.prisons)
                or any(name != spec.name for (name, _), spec in zip(layout.chunks, config.prisons, strict=True))
                or any("&" in t for _, t in layout.chunks)
                or not cut_where_yaml_cuts(src, layout))):
            self._last = None
            return
        self._last = _Last(layout.head, layout.tail, config,
                           {t: spec for (_, t), spec in zip(layout.chunks, config.prisons, strict=True)})
