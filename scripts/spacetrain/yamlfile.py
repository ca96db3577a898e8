"""The one YAML reader: every mapping and list remembers its line, and hostile YAML is refused.

The policy, the gate, evaluation suites and README front matter all go through
:func:`parse_yaml`, so the same mistake gets the same sentence with the same line:

- a key written twice (PyYAML silently keeps the last one): ``key 'x' appears twice``;
- a key that YAML reads as something other than text (``on:``, ``1:``, ``null:``), where
  keys are names (``string_keys=True``, the default): it must be quoted;
- nesting deeper than :data:`MAX_YAML_DEPTH` (PyYAML recurses once per level, so a fuzzer's
  ``[[[[...`` would be a ``RecursionError``), counted through aliases too;
- aliases that expand to more than :data:`MAX_YAML_NODES` values ("billion laughs",
  merge-key doubling) or refer to the node they sit in.

Anchors, aliases and ``<<`` merge keys within those bounds work as YAML says. Mappings
load as :class:`LineDict` and lists as :class:`LineList` (plain ``dict`` and ``list``
subclasses), which carry the lines :mod:`spacetrain.schema` names in its errors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from spacetrain.errors import InputFileError
from spacetrain.inputs import read_text

# Deeper than any file spacetrain reads; far under where PyYAML recurses out (~300).
MAX_YAML_DEPTH = 64
# Values after expanding aliases: the 8 kB demo suite has ~600; a bomb has billions.
MAX_YAML_NODES = 100_000


class LineDict(dict):
    """A mapping from YAML; ``line`` is where it starts, ``lines[key]`` where each key is."""

    line: int
    lines: dict[Any, int]


class LineList(list):
    """A sequence from YAML; ``line`` is where it starts, ``lines[i]`` where item i is."""

    line: int
    lines: list[int]


class YamlProblem(ValueError):
    """Text that is not YAML spacetrain accepts; ``line`` is 1-based (``None``: unknown).

    ``syntax`` is true when the text does not parse at all (callers say "invalid YAML"),
    false for YAML we refuse (a duplicate key, too deep, an alias bomb, a non-text key).
    """

    def __init__(self, detail: str, line: int | None, *, syntax: bool = False) -> None:
        super().__init__(detail)
        self.detail = detail
        self.line = line
        self.syntax = syntax


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


class _Loader(yaml.SafeLoader):
    """SafeLoader with line-carrying containers and the refusals of the module docstring."""

    def __init__(self, text: str, *, first_line: int, string_keys: bool) -> None:
        super().__init__(text)
        self.st_first_line = first_line
        self.st_string_keys = string_keys
        self.st_depth = 0

    def line_at(self, mark: yaml.Mark | None) -> int | None:
        return mark.line + self.st_first_line if mark is not None else None

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        self.st_depth += 1
        try:
            if self.st_depth > MAX_YAML_DEPTH:
                line = self.line_at(self.peek_event().start_mark)
                raise YamlProblem(f"nested more than {MAX_YAML_DEPTH} levels deep", line)
            return super().compose_node(parent, index)
        finally:
            self.st_depth -= 1

    def measure(self, root: yaml.Node) -> None:
        """Refuse aliases that expand too far, nest too deep or contain themselves.

        Sizes and depths are memoized per node, so this is linear in the text even
        when the expansion would be exponential.
        """
        done: dict[int, tuple[int, int]] = {}
        open_: set[int] = set()
        stack: list[tuple[yaml.Node, bool]] = [(root, False)]
        while stack:
            node, finished = stack.pop()
            key = id(node)
            if finished:
                open_.discard(key)
                kids = [done[id(k)] for k in _children(node)]
                size = 1 + sum(s for s, _ in kids)
                depth = 1 + max((d for _, d in kids), default=0)
                done[key] = (size, depth)
                line = self.line_at(node.start_mark)
                if size > MAX_YAML_NODES:
                    raise YamlProblem(
                        f"aliases expand to more than {MAX_YAML_NODES} values; "
                        "write the values out instead of repeating aliases",
                        line,
                    )
                if depth > MAX_YAML_DEPTH:
                    raise YamlProblem(
                        f"nested more than {MAX_YAML_DEPTH} levels deep (through aliases)", line
                    )
                continue
            if key in done:
                continue
            if key in open_:
                raise YamlProblem(
                    "an alias refers to the list or mapping it is inside of",
                    self.line_at(node.start_mark),
                )
            open_.add(key)
            stack.append((node, True))
            stack.extend((kid, False) for kid in _children(node) if id(kid) not in done)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> LineDict:
        seen: dict[Any, int | None] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            line = self.line_at(key_node.start_mark)
            try:
                first = seen.get(key)
                repeated = key in seen
            except TypeError:
                raise YamlProblem(
                    "a mapping key must be a plain value, not a list or mapping", line
                ) from None
            if repeated:
                raise YamlProblem(
                    f"key {key!r} appears twice (first at line {first}); keep one", line
                )
            if self.st_string_keys and not isinstance(key, str):
                raise YamlProblem(
                    f"key {key_node.value!r} is read as {_type_name(key)}, not text; "
                    f"quote it: '{key_node.value}'",
                    line,
                )
            seen[key] = line
        self.flatten_mapping(node)  # ``<<`` merges: their keys come first, own keys win
        result = LineDict()
        result.line = self.line_at(node.start_mark) or 1
        result.lines = {}
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            result[key] = self.construct_object(value_node, deep=True)
            result.lines[key] = self.line_at(key_node.start_mark) or result.line
        return result

    def construct_sequence(self, node: yaml.SequenceNode, deep: bool = False) -> LineList:
        result = LineList(self.construct_object(child, deep=True) for child in node.value)
        result.line = self.line_at(node.start_mark) or 1
        result.lines = [self.line_at(child.start_mark) or result.line for child in node.value]
        return result


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _Loader.construct_mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _Loader.construct_sequence)


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return f"a {type(value).__name__}"


def parse_yaml(text: str, *, first_line: int = 1, string_keys: bool = True) -> Any:
    """One YAML document with :class:`LineDict`/:class:`LineList` containers (``None`` if empty).

    ``first_line`` is the line of the text's first line in its file (README front
    matter starts on line 2), so every line reported is the file's.

    Raises:
        YamlProblem: not YAML, or YAML refused for the reasons the module lists.
    """
    loader = _Loader(text, first_line=first_line, string_keys=string_keys)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        loader.measure(node)
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = " ".join(str(exc.problem or exc.context or "not YAML").split())
        raise YamlProblem(problem, loader.line_at(mark), syntax=True) from None
    except yaml.YAMLError as exc:
        raise YamlProblem(" ".join(str(exc).split()), None, syntax=True) from None
    except YamlProblem:
        raise
    except ValueError as exc:  # an integer of thousands of digits (int()'s own limit)
        raise YamlProblem(" ".join(str(exc).split()), None) from None
    except RecursionError:  # the depth limits make this unreachable; a last line of defence
        raise YamlProblem(f"nested more than {MAX_YAML_DEPTH} levels deep", None) from None
    finally:
        loader.dispose()


def load_yaml(path: str | Path, text: str | None = None) -> Any:
    """Read (unless ``text`` is given) and parse a YAML file; anything wrong is one
    :class:`InputFileError` line naming ``path`` (exit 2).

    Raises:
        InputFileError: unreadable, not UTF-8, not YAML, or refused YAML (with its line).
    """
    if text is None:
        text = read_text(path)  # a FIFO, a folder or a non-UTF-8 file: one line, exit 2
    try:
        return parse_yaml(text)
    except YamlProblem as exc:
        detail = f"invalid YAML: {exc.detail}" if exc.syntax else exc.detail
        raise InputFileError(path, detail, line=exc.line) from None


def line_of(node: Any, key: Any = None, default: int | None = None) -> int | None:
    """The line of ``node`` itself, or of its entry ``key`` (a mapping key or list index)."""
    if key is None:
        return getattr(node, "line", default)
    if isinstance(node, LineDict):
        return node.lines.get(key, node.line)
    if isinstance(node, LineList) and isinstance(key, int) and 0 <= key < len(node.lines):
        return node.lines[key]
    return getattr(node, "line", default)


__all__ = [
    "MAX_YAML_DEPTH",
    "MAX_YAML_NODES",
    "LineDict",
    "LineList",
    "YamlProblem",
    "line_of",
    "load_yaml",
    "parse_yaml",
]
