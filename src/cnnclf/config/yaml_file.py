"""Reading YAML safely: a config file, or one `--set` value.

PyYAML's safe loader builds no Python objects but plain data. What it does not bound is size:
aliases let a few hundred bytes stand for millions of values (a "billion laughs"), or for a
value that contains itself. Each document is composed first and its node graph checked, every
node visited once, before any value is built from it.
"""

import os
import sys
from pathlib import Path
from typing import Any

import yaml

from cnnclf.errors import ConfigError, first_line
from cnnclf.reading import NotReadable, open_regular

MAX_BYTES = 1 << 20  # a config is a page of text; a megabyte is not a config
MAX_VALUES = 100_000  # values in the document with every alias expanded
MAX_DEPTH = 64  # mappings and lists within each other (a config needs a handful)


def read_config_file(path: Path) -> tuple[object, dict[tuple, int]]:
    """The file's data and the 1-based line of each key and list item, by key path."""
    try:
        with open_regular(path, sys.maxsize) as f:
            size = os.fstat(f.fileno()).st_size
            if size > MAX_BYTES:
                raise ConfigError(
                    f"{path}: {size:,} bytes is too large for a config (at most {MAX_BYTES:,}); pass the YAML "
                    f"config file"
                )
            text = f.read(MAX_BYTES).decode("utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file; check the path (examples are in configs/)") from None
    except NotReadable as e:
        raise ConfigError(f"{path}: {e}; pass a YAML config file") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read the config file ({e.__class__.__name__}); pass a YAML file") from None
    try:
        node = _compose(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: not valid YAML ({_problem(e)}); check the indentation and colons there") from None
    except RecursionError:
        raise _too_deep(str(path)) from None
    _check_size(node, str(path))
    _check_repeats(node, str(path))
    return _construct(node, str(path)), _key_lines(node)


def parse_value(text: str, key: str):
    """A `--set key=value` value as YAML: plain data only, no tags."""
    where = f"--set {key}"
    try:
        tags = [vars(e)["tag"] for e in yaml.parse(text) if vars(e).get("tag")]
        node = _compose(text)
    except yaml.YAMLError as e:
        raise ConfigError(
            f"{where}: {_quoted(text)} is not valid YAML ({_problem(e)}); quote it, like --set '{key}=\"...\"'"
        ) from None
    except RecursionError:
        raise _too_deep(where) from None
    if tags:
        raise ConfigError(
            f"{where}: {_quoted(text)} carries the YAML tag {tags[0]}; write plain values (numbers, "
            f"strings, [lists], {{mappings}})"
        )
    _check_size(node, where)
    _check_repeats(node, where)
    return _construct(node, where)


def _compose(text: str):
    loader = yaml.SafeLoader(text)
    try:
        return loader.get_single_node()
    finally:
        loader.dispose()


def _construct(node, where: str):
    if node is None:
        return None
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_document(node)
    except RecursionError:
        raise _too_deep(where) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark and not where.startswith("--set") else ""
        raise ConfigError(
            f"{where}{line}: not valid YAML ({_problem(e)}); check the indentation and colons there"
        ) from None
    finally:
        loader.dispose()


def _check_size(root, where: str) -> None:
    """Refuse a document whose aliases make it recursive or expand it past MAX_VALUES values.
    Each node is visited once: its expanded size is remembered (aliases share node objects)."""
    if root is None:
        return
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            on_path.discard(key)
            sizes[key] = 1 + sum(sizes[id(child)] for child in _children(node))
            if sizes[key] > MAX_VALUES:
                raise ConfigError(
                    f"{where}: the YAML expands to more than {MAX_VALUES:,} values through "
                    f"aliases (*name); write the values out"
                )
            continue
        if key in sizes:
            continue
        if key in on_path:
            raise ConfigError(
                f"{where}:{node.start_mark.line + 1}: a YAML alias refers to a value that contains "
                f"it, which never ends; remove the alias"
            )
        on_path.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node) if id(child) not in sizes)


def _check_repeats(root, where: str) -> None:
    """Refuse a key given twice in one mapping (YAML would keep the later value silently), and nesting
    deeper than MAX_DEPTH (what reads the config walks it by recursion)."""
    seen: set[int] = set()
    stack = [(root, 0)]
    while stack:
        node, depth = stack.pop()
        if node is None or id(node) in seen:
            continue
        if depth > MAX_DEPTH:
            raise _too_deep(where)
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first: dict = {}
            for key, _ in node.value:
                if isinstance(key, yaml.ScalarNode) and key.value != "<<":
                    line = key.start_mark.line + 1
                    if key.value in first:
                        place = where if where.startswith("--set") else f"{where}:{line}"
                        raise ConfigError(
                            f"{place}: key {key.value!r} is given twice (first on line {first[key.value]}), "
                            f"and YAML would keep only the later one; remove one of them"
                        )
                    first[key.value] = line
        stack.extend((child, depth + 1) for child in _children(node))


def _too_deep(where: str) -> ConfigError:
    return ConfigError(f"{where}: the YAML nests too deeply to be a config; write it out plainly")


def _children(node) -> list:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _key_lines(root) -> dict[tuple, int]:
    """1-based line of every key and list item, by key path; each node is walked once."""
    lines: dict[tuple, int] = {}
    seen: set[int] = set()
    stack: list[tuple[Any, tuple]] = [(root, ())]
    while stack:
        node, path = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode):
                    lines[path + (key.value,)] = key.start_mark.line + 1  # a repeated key: the last one counts
                    stack.append((value, path + (key.value,)))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                lines[path + (i,)] = item.start_mark.line + 1
                stack.append((item, path + (i,)))
    return lines


def _quoted(text: str) -> str:
    return repr(text) if len(text) <= 60 else repr(text[:57] + "...")


def _problem(error: yaml.YAMLError) -> str:
    return getattr(error, "problem", None) or first_line(error)
