"""YAML with line numbers: plain Python data plus a map from key path to source line.

PyYAML's safe loader forgets where things came from and silently keeps the last of two
duplicate keys; configuration errors need both the line and the duplicate.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import yaml

Path = tuple  # ("prisons", "web1", "ip4", 0)


@dataclass
class Source:
    filename: str
    data: object
    lines: dict = field(default_factory=dict)  # Path -> 1-based line
    duplicates: list = field(default_factory=list)  # (Path, first line, second line)
    values: int = 0  # built so far (an alias is built again each time it is used)

    def line(self, path: Path) -> int | None:
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get(())


class YamlError(Exception):
    def __init__(self, filename: str, line: int | None, message: str):
        self.filename, self.line = filename, line
        where = f"{filename}:{line}" if line else filename
        super().__init__(f"{where}: {message}")


# libyaml's parser where PyYAML was built with it (Debian's python3-yaml, PyPI's wheels): the
# same nodes with the same marks, 20 times faster than the pure-Python one (a configuration of
# 10,000 prisons: 0.3 s rather than 6 s, at every start and reload)
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# a configuration is a few levels deep and, with 10,000 prisons, some 10^5 values; beyond these
# a file is refused with its line rather than end in RecursionError, or build for minutes
# (aliases of aliases: each use is built again, ten uses of ten uses of ... is 10^n)
MAX_DEPTH = 64
MAX_VALUES = 2_000_000


def load(text: str, filename: str) -> Source:
    loader = _LOADER(text)
    try:
        node = loader.get_single_node()
        src = Source(filename, None)
        src.data = _build(loader, node, (), src) if node is not None else None
        return src
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise YamlError(filename, line, f"invalid YAML: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise YamlError(filename, None, f"invalid YAML: {exc}") from None
    except RecursionError:  # libyaml's composer, before _build's own limit
        raise YamlError(filename, None, f"invalid YAML: nested more than {MAX_DEPTH} levels deep") from None
    finally:
        loader.dispose()


def _build(loader, node, path: Path, src: Source, within: frozenset = frozenset()):
    """within: the collections being built around this node; an alias to one of them would
    make the data hold itself (and this recursion never end)."""
    src.values += 1
    if len(path) > MAX_DEPTH or src.values > MAX_VALUES:
        what = f"nested more than {MAX_DEPTH} levels deep" if len(path) > MAX_DEPTH else \
            f"more than {MAX_VALUES:,} values (aliases are built again at each use)"
        raise YamlError(src.filename, node.start_mark.line + 1, f"{'.'.join(map(str, path))}: {what}")
    if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)):
        if id(node) in within:  # blamed where the alias is (its key's line, as the caller set it)
            raise YamlError(src.filename, src.lines.get(path, node.start_mark.line + 1),
                            f"{'.'.join(map(str, path))}: an alias refers to a collection it is in "
                            "(the data would hold itself)")
        within = within | {id(node)}
    src.lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # resolves "<<" merge keys
        out = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise YamlError(src.filename, key_node.start_mark.line + 1,
                                f"{'.'.join(map(str, path)) or '(top)'}: a key must be a plain value, "
                                "not a list or a mapping")
            key = _scalar(loader, key_node, src)
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                key = str(key)
            sub = path + (key,)
            if key in out:
                src.duplicates.append((sub, src.lines[sub], key_node.start_mark.line + 1))
            src.lines[sub] = key_node.start_mark.line + 1
            out[key] = _build(loader, value_node, sub, src, within)
            src.lines[sub] = key_node.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(loader, item, path + (i,), src, within) for i, item in enumerate(node.value)]
    return _scalar(loader, node, src)


def _scalar(loader, node, src: Source):
    """A scalar's value; PyYAML's constructors raise what they meet (a date 2001-02-30, an int
    of 5,000 digits, `!!int abc`): a configuration error at its line, not a traceback."""
    try:
        return loader.construct_object(node, deep=True)
    except yaml.YAMLError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError) as exc:
        tag = str(node.tag).rsplit(":", 1)[-1]
        value = str(node.value)
        shown = value if len(value) <= 40 else value[:37] + "..."
        raise YamlError(src.filename, node.start_mark.line + 1,
                        f"{shown!r} is not a valid {tag} ({exc})") from None
