"""The base of every model read from a runbook file: the runbook's own models and each step's Params."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """Unknown keys are errors, not silently ignored; a parsed model is never changed afterwards."""

    model_config = ConfigDict(extra="forbid", frozen=True)
