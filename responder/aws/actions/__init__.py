"""Registered playbook actions, by the kebab-case name playbooks use."""

from __future__ import annotations

from responder.aws.actions.base import Action, ActionContext, Halt, StepResult
from responder.aws.actions.cloudtrail import BlastRadiusReport, SessionOriginTrace
from responder.aws.actions.iam import (
    AccessKeyDeactivate,
    AccessKeyRotate,
    RoleSessionsRevoke,
    UserSessionsRevoke,
)
from responder.aws.actions.secretsmanager import ReplacementSecretStore
from responder.aws.actions.sts import AccessKeyResolve

__all__ = [
    "REGISTRY",
    "Action",
    "ActionContext",
    "Halt",
    "StepResult",
    "required_permissions",
]

REGISTRY: dict[str, type[Action]] = {
    action.name: action
    for action in (
        AccessKeyResolve,
        AccessKeyDeactivate,
        UserSessionsRevoke,
        RoleSessionsRevoke,
        AccessKeyRotate,
        ReplacementSecretStore,
        SessionOriginTrace,
        BlastRadiusReport,
    )
}


def required_permissions() -> list[str]:
    """Return every IAM action the registered actions may call, sorted."""
    return sorted({perm for action in REGISTRY.values() for perm in action.permissions})
