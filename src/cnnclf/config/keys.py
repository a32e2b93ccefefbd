"""Key paths into a config: `train.optimizer.learning_rate`, `model.layers[2].Dense.units`.

How `--set` (and `tune.space`) names a key, sets it on a resolved config, and suggests the
nearest key when one is misspelled.
"""

import re
import typing
from typing import Any

from pydantic import BaseModel

from cnnclf.errors import ConfigError, did_you_mean

_PATH_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def parse_path(key: str) -> tuple:
    """'model.layers[2].Dense.units' -> ('model', 'layers', 2, 'Dense', 'units')."""
    parts = tuple(int(i) if i else name for name, i in _PATH_PART.findall(key))
    if not parts or dotted(parts) != key:
        raise ConfigError(
            f"--set {key}: not a key path; write it like train.optimizer.learning_rate or model.layers[2].Dense.units"
        )
    return parts


def dotted(loc: tuple) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")


def set_path(raw: dict, schema: type[BaseModel], parts: tuple, value, key: str) -> None:
    """raw[parts] = value on a resolved config dict, checking each key against the schema
    (the pydantic model at each depth; None inside free-form values)."""
    node: Any = raw
    model: type[BaseModel] | None = schema
    for depth, part in enumerate(parts):
        here = dotted(parts[: depth + 1])
        if isinstance(part, int):
            if not isinstance(node, list) or part >= len(node):
                has = f"has {len(node)} items" if isinstance(node, list) else "is not a list"
                raise ConfigError(f"--set {key}: {here} does not exist ({dotted(parts[:depth])} {has})")
        else:
            if not isinstance(node, dict):
                raise ConfigError(f"--set {key}: {dotted(parts[:depth])} has no keys; set it as a whole")
            fields = fields_of(model)
            if fields is not None and part not in fields:
                raise ConfigError(f"--set {key}: unknown key {here!r}{nearest_key(schema, parts[: depth + 1], fields)}")
            model = model_in(fields[part]) if fields is not None else None
        if depth == len(parts) - 1:
            node[part] = value
            return
        if isinstance(part, str) and not isinstance(node.get(part), (dict, list)):
            node[part] = {}  # a section switched off (false) comes back on with its defaults
        node = node[part]


def model_in(annotation) -> type[BaseModel] | None:
    """The pydantic model inside a field's annotation (Optional[X], list[X]), if any."""
    stack = [annotation]
    while stack:
        t = stack.pop()
        if isinstance(t, type) and issubclass(t, BaseModel):
            return t
        stack.extend(typing.get_args(t))
    return None


def fields_of(model: type[BaseModel] | None) -> dict | None:
    """Field annotations of a pydantic model; None where any key is allowed."""
    if model is None or model.model_config.get("extra") == "allow":
        return None
    return {name: field.annotation for name, field in model.model_fields.items()}


def nearest_key(schema: type[BaseModel], path: tuple, siblings) -> str:
    """The closest key to the last part of `path`, as a full path: a sibling, or a key elsewhere
    in the schema (so train.learning_rate points at train.optimizer.learning_rate); siblings win ties."""
    name, parent = str(path[-1]), dotted(path[:-1])
    candidates = [(s, f"{parent}.{s}" if parent else s) for s in siblings]
    candidates += [(p.rsplit(".", 1)[-1], p) for p in schema_paths(schema)]
    return did_you_mean(name, candidates)


def schema_paths(model: type[BaseModel], prefix: str = "") -> list[str]:
    paths = []
    for name, field in model.model_fields.items():
        paths.append(prefix + name)
        inner = model_in(field.annotation)
        if inner is not None:
            paths += schema_paths(inner, f"{prefix}{name}.")
    return paths


def flatten(value, prefix: str = "") -> dict:
    """{"train": {"epochs": 3}} -> {"train.epochs": 3}; lists stay values."""
    if isinstance(value, dict) and value:
        return {k: v for key, item in value.items() for k, v in flatten(item, f"{prefix}{key}.").items()}
    return {prefix.rstrip("."): value}


def parse_set(text: str) -> tuple[str, str]:
    """'key.path=value' -> (key, value text)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {text!r}: expected key.path=value, like --set train.epochs=3")
    return key.strip(), value
