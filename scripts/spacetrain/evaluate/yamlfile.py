"""YAML that remembers line numbers, so a bad suite or gate file names its line.

PyYAML's composed nodes carry marks; this loader keeps them on the mappings and
lists it builds (``.line`` for the node itself, ``.lines[key]`` for each entry),
which is all a validator needs to say ``policy/evals/x.yaml:14: ...``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from spacetrain.errors import InputFileError
from spacetrain.inputs import read_text


class LineDict(dict):
    """A mapping from YAML; ``line`` is where it starts, ``lines[key]`` where each key is."""

    line: int
    lines: dict[Any, int]


class LineList(list):
    """A sequence from YAML; ``line`` is where it starts, ``lines[i]`` where item i is."""

    line: int
    lines: list[int]


class _LineLoader(yaml.SafeLoader):
    """SafeLoader whose mappings and sequences keep 1-based line numbers."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> LineDict:
        self.flatten_mapping(node)
        result = LineDict()
        result.line = node.start_mark.line + 1
        result.lines = {}
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                hash(key)
            except TypeError:
                raise yaml.constructor.ConstructorError(
                    None, None, "a mapping key must be a plain value", key_node.start_mark
                ) from None
            if key in result:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            result[key] = self.construct_object(value_node, deep=True)
            result.lines[key] = key_node.start_mark.line + 1
        return result

    def construct_sequence(self, node: yaml.SequenceNode, deep: bool = False) -> LineList:
        result = LineList(self.construct_object(child, deep=True) for child in node.value)
        result.line = node.start_mark.line + 1
        result.lines = [child.start_mark.line + 1 for child in node.value]
        return result


_LineLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _LineLoader.construct_mapping
)
_LineLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _LineLoader.construct_sequence
)


def load_yaml(path: str | Path) -> Any:
    """Parse one YAML document; unreadable or invalid YAML is an :class:`InputFileError`."""
    path = Path(path)
    text = read_text(path)  # a FIFO, a folder or a non-UTF-8 file: one line, exit 2
    try:
        return yaml.load(text, Loader=_LineLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = " ".join(str(exc.problem or exc.context or "invalid YAML").split())
        raise InputFileError(path, f"invalid YAML: {problem}", line=line) from None
    except yaml.YAMLError as exc:
        raise InputFileError(path, f"invalid YAML: {' '.join(str(exc).split())}") from None
    except RecursionError:  # PyYAML recurses once per nesting level
        raise InputFileError(path, "invalid YAML: lists or mappings nested too deeply") from None


def line_of(node: Any, key: Any = None, default: int | None = None) -> int | None:
    """The line of ``node`` itself, or of its entry ``key`` (a mapping key or list index)."""
    if key is None:
        return getattr(node, "line", default)
    if isinstance(node, LineDict):
        return node.lines.get(key, node.line)
    if isinstance(node, LineList) and isinstance(key, int) and 0 <= key < len(node.lines):
        return node.lines[key]
    return getattr(node, "line", default)


__all__ = ["LineDict", "LineList", "line_of", "load_yaml"]
