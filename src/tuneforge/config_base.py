"""The base of every config section: unknown keys rejected (config_errors.py names the nearest valid one), frozen."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
