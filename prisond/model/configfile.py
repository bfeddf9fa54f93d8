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

import re
import threading
from dataclasses import dataclass

import yaml

from prisond.model.config import Config, PrisonSpec, cross_problems, parse, read_text
from prisond.model.errors import ConfigError

_PRISONS_LINE = re.compile(r"prisons:[ \t]*(#.*)?\r?\n?")
_KEY = re.compile(r"([A-Za-z0-9][A-Za-z0-9_-]{0,62}):(?=[ \t\r\n]|$)")
_RESOLVER = yaml.resolver.Resolver()
_STR = "tag:yaml.org,2002:str"
# what YAML also takes for a line break (a lone \r, NEL, U+2028/9): cut at "\n" only, a file
# holding one is read whole rather than cut where YAML would not
_OTHER_BREAKS = re.compile("\r(?!\n)|[\x85\u2028\u2029]")


@dataclass(frozen=True)
class Layout:
    head: str  # up to and with the `prisons:` line (and comments before the first prison)
    tail: str  # the top-level keys after the prisons
    chunks: tuple[tuple[str, str], ...]  # (name, text): a prison's lines, with the comments below it


def split(text: str) -> Layout | None:
    """The file cut at each prison, or None where its layout is not the plain one."""
    if _OTHER_BREAKS.search(text):
        return None
    lines = [line + "\n" for line in text.split("\n")]
    lines[-1] = lines[-1][:-1]
    starts = [i for i, line in enumerate(lines) if _PRISONS_LINE.fullmatch(line)]
    if len(starts) != 1:
        return None
    first = starts[0] + 1
    end = next((i for i in range(first, len(lines)) if lines[i][:1] not in (" ", "\t", "#", "\n", "\r")),
               len(lines))
    head, chunks, cur, indent = list(lines[:first]), [], None, None
    for line in lines[first:end]:
        body = line.lstrip(" ")
        if body[:1] == "\t":
            return None  # YAML has no tabs in indentation: its own error
        if not body.strip() or body[:1] == "#":
            (cur if cur is not None else head).append(line)
            continue
        n = len(line) - len(body)
        indent = n if indent is None else indent
        if n < indent:
            return None
        if n > indent:
            if cur is None:
                return None
            cur.append(line)
            continue
        m = _KEY.match(body)
        if not m or m[1].isdigit() or _RESOLVER.resolve(yaml.ScalarNode, m[1], (True, False)) != _STR:
            return None  # a quoted name, a list, or a name YAML reads as a number or a boolean
        cur = [line]
        chunks.append((m[1], cur))
    return Layout("".join(head), "".join(lines[end:]), tuple((name, "".join(c)) for name, c in chunks))


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
                config = parse(text, self.path)  # ConfigError: nothing is remembered
                self.parsed = len(config.prisons)
            self._remember(layout, config)
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
                try:
                    one = parse(layout.head + chunk + layout.tail, self.path)
                except ConfigError:
                    return None
                if len(one.prisons) != 1 or one.prisons[0].name != name or one.daemon != last.config.daemon:
                    return None
                spec, parsed = one.prisons[0], parsed + 1
            specs.append(spec)
        if cross_problems(specs):
            return None
        self.parsed = parsed
        return Config(source=self.path, prisons=tuple(specs), daemon=last.config.daemon)

    def _remember(self, layout: Layout | None, config: Config) -> None:
        """Keep each prison's spec by its text, when the texts and the specs are known to pair
        up: as many prisons as keys at the prisons' indent, in the same order, and no anchor a
        prison's text could lend another."""
        if (layout is None or len(layout.chunks) != len(config.prisons)
                or any(name != spec.name for (name, _), spec in zip(layout.chunks, config.prisons, strict=True))
                or any("&" in t for _, t in layout.chunks)):
            self._last = None
            return
        self._last = _Last(layout.head, layout.tail, config,
                           {t: spec for (_, t), spec in zip(layout.chunks, config.prisons, strict=True)})
