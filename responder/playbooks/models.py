"""Playbook files: a name, the signals they apply to, and ordered steps."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Playbook", "StepSpec"]

_NAME = r"^[a-z][a-z0-9-]{0,62}$"


class StepSpec(BaseModel):
    """One step: a registered action with its options."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=_NAME, description="Unique within the playbook.")
    action: str = Field(description="Registered action name, kebab-case.")
    options: dict[str, Any] = Field(default_factory=dict)
    needs: tuple[str, ...] = Field(
        (), description="Earlier steps that must have succeeded for this one to run."
    )
    critical: bool = Field(
        False, description="A failure here means the key is not contained."
    )
    always: bool = Field(
        False, description="Run even when an earlier step ended the playbook."
    )
    approval: bool | None = Field(
        None,
        description="Wait for POST /approve first; unset means the action's default.",
    )


class Playbook(BaseModel):
    """A named, ordered list of steps and the signal sources it answers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=_NAME)
    description: str = ""
    signals: tuple[str, ...] = Field(min_length=1)
    keys: tuple[Literal["long-term", "temporary"], ...] = Field(
        ("long-term",),
        min_length=1,
        description="Key types answered: long-term (AKIA) and/or temporary (ASIA).",
    )
    steps: tuple[StepSpec, ...] = Field(min_length=1)
