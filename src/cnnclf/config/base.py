"""What every config section shares: unknown keys refused, no NaN or infinity, switches, paths."""

import os

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


def on_off(value):
    """`true` means the section with its defaults, `false`/`null` means off."""
    return {} if value is True else None if value is False else value


def local_path(value: str | None) -> str | None:
    """A path as the user wrote it, made absolute, so that a run's config works from anywhere."""
    if value is None:
        return None
    if "\0" in value:
        raise ValueError("a path cannot hold a NUL character")
    return os.path.abspath(os.path.expanduser(value))
