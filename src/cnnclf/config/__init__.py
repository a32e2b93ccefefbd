"""The config: one YAML file says everything about an experiment.

load_config(path, sets, values) reads the file safely (yaml_file.py), applies `--set key.path=value`
overrides (keys.py), validates every key (schema.py, where every default lives; its sections in
base.py, model_keys.py and train_keys.py) and the rules across keys (rules.py), and raises
ConfigError naming the file and line or the --set, the key, what was found and the fix.
"""

import re
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from cnnclf.config import rules
from cnnclf.config.keys import dotted, fields_of, flatten, model_in, nearest_key, parse_path, parse_set, set_path
from cnnclf.config.schema import Config, DataConfig, TrainConfig
from cnnclf.config.yaml_file import parse_value, read_config_file
from cnnclf.errors import ConfigError

__all__ = ["Config", "DataConfig", "TrainConfig", "load_config", "override", "flatten"]


def load_config(path, sets: tuple[str, ...] = (), values: dict[str, Any] | None = None) -> Config:
    """Read and validate a YAML config file, with `sets` ('key.path=value' strings, values in YAML)
    and `values` ({key.path: value}, taken as they are: --name and --runs-dir) applied on top."""
    path = Path(path)
    raw, lines = read_config_file(path)
    if raw is None:
        raise ConfigError(f"{path}: the config file is empty; start from `cnnclf init` or a file in configs/")
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{path}: a config must be a YAML mapping of sections (data:, model:, train:), got a {type(raw).__name__}"
        )
    if raw.get("name") is None:  # the file's stem, made a safe run name ("my exp.yaml" -> my-exp)
        raw["name"] = re.sub(r"[^A-Za-z0-9._-]+", "-", path.stem).strip("-")[:100] or "run"
    changes = {key: parse_value(text, key) for key, text in map(parse_set, sets)}
    changes.update(values or {})
    where = _Locator(path, lines, changes)
    if not changes:
        return _validate(raw, where)
    return override(_parse(raw, where), changes, where)


def override(config: Config, changes: dict[str, Any], where=None) -> Config:
    """A validated copy of `config` with dotted keys replaced, e.g. {"train.epochs": 1}."""
    where = where or _Locator(None, {}, changes)
    raw = config.model_dump(mode="json")
    for key, value in changes.items():
        set_path(raw, Config, parse_path(key), value, key)
    return _validate(raw, where)


class _Locator:
    """Says where a key came from: `file.yaml:LINE`, `--set key`, or the file itself."""

    def __init__(self, path: Path | None, lines: dict, changes: dict):
        self.path, self.lines, self.sets = path, lines, {parse_path(k): k for k in changes}

    def __call__(self, loc: tuple) -> str:
        for n in range(len(loc), 0, -1):
            if loc[:n] in self.sets:
                return f"--set {self.sets[loc[:n]]}"
        if self.path is None:
            return "config"
        for n in range(len(loc), 0, -1):
            if loc[:n] in self.lines:
                return f"{self.path}:{self.lines[loc[:n]]}"
        return str(self.path)


def _parse(raw: dict, where) -> Config:
    try:
        return Config.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(_describe(e.errors(), where)) from None
    except RecursionError:
        raise ConfigError(f"{where(())}: the config nests too deeply; write it out plainly") from None


def _validate(raw: dict, where) -> Config:
    config = _parse(raw, where)
    rules.check(config, where)
    return config


MAX_TYPOS = 5  # misspelt keys named in one error line
_UNION_TAG = re.compile(r"[\[(]|^(int|bool|str|float|none|constrained-\w+)$")


def _describe(errors: list, where) -> str:
    """One line: every misspelt key at once (each with where it is and the nearest valid key), else
    the first mistake; the alternatives of a union (auto or a number) are joined."""
    located = [(tuple(p for p in e["loc"] if not (isinstance(p, str) and _UNION_TAG.search(p))), e) for e in errors]
    unknown = [loc for loc, e in located if e["type"] == "extra_forbidden"]
    if unknown:
        said = [_unknown_key(loc, where) for loc in unknown[:MAX_TYPOS]]
        if len(unknown) > MAX_TYPOS:
            said.append(f"{len(unknown) - MAX_TYPOS} more unknown keys")
        return "".join(
            part if i == 0 else ("" if said[i - 1].endswith("?") else ".") + " Also " + part
            for i, part in enumerate(said)
        )
    loc, error = located[0]
    key = dotted(loc)
    if error["type"] == "missing":
        return f"{where(loc)}: {key} is required"
    # pydantic's own messages ("Input should be ...") joined in lower case; cnnclf's (value errors) as written
    messages = dict.fromkeys(
        e["msg"][len("Value error, ") :] if e["msg"].startswith("Value error, ") else e["msg"][0].lower() + e["msg"][1:]
        for place, e in located
        if place == loc
    )
    message = " or ".join(messages)
    place = where(loc)
    named = "" if place == f"--set {key}" else f"{key}: "  # --set already names the key
    return f"{place}: {named}got {_short(error['input'])}; {message}"


def _unknown_key(loc: tuple, where) -> str:
    schema: Any = Config
    for part in loc[:-1]:
        if not isinstance(part, int):
            schema = model_in((fields_of(schema) or {})[part])
    return f"{where(loc)}: unknown key {dotted(loc)!r}{nearest_key(Config, loc, fields_of(schema) or ())}"


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."
