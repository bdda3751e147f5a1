"""Hand the owner the replacement key through Secrets Manager."""

from __future__ import annotations

import json
import uuid
from typing import Any

import structlog
from pydantic import BaseModel, ConfigDict, Field

from responder.aws.actions.base import Action, ActionContext, StepResult
from responder.aws.actions.iam import REPLACEMENT_MEMORY_KEY
from responder.exceptions import (
    AwsCallFailed,
    ResourceNotFound,
    SecretScheduledForDeletion,
)
from responder.store.models import StepStatus

__all__ = ["ReplacementSecretStore", "client_request_token"]

log = structlog.get_logger(__name__)

# Fixed namespace: the same incident and key always give the same token.
_TOKEN_NAMESPACE = uuid.UUID("6f1c2d1e-58c4-4bb8-9d43-6f3c1b1f0a55")


def client_request_token(incident_id: str, access_key_id: str) -> str:
    """Return the idempotency token for storing one key of one incident."""
    return str(uuid.uuid5(_TOKEN_NAMESPACE, f"{incident_id}/{access_key_id}"))


class StoreOptions(BaseModel):
    """Options of `replacement-secret-store`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    secret_name: str | None = Field(
        None,
        description="Name template with {user_name}; the setting's template if unset.",
    )
    kms_key_id: str | None = Field(None, description="KMS key for a new secret.")


class ReplacementSecretStore(Action):
    """Write the replacement key to Secrets Manager, idempotently.

    Creates the secret or adds a version; a secret scheduled for deletion is
    restored first. `ClientRequestToken` is derived from the incident and the key,
    so a retried write adds no second version. If the write still fails, the
    replacement is deactivated, so no usable key exists whose secret nobody holds::

        - name: store
          action: replacement-secret-store
          needs: [rotate]
          options: {secret_name: "responder/{user_name}/access-key"}
    """

    name = "replacement-secret-store"
    mutates = True
    once_per_incident = True
    Options = StoreOptions
    permissions = (
        "secretsmanager:DescribeSecret",
        "secretsmanager:CreateSecret",
        "secretsmanager:PutSecretValue",
        "secretsmanager:RestoreSecret",
        "secretsmanager:TagResource",
        "iam:UpdateAccessKey",
    )

    def run(self, ctx: ActionContext) -> StepResult:
        """Return succeeded with the secret's ARN and version."""
        options: StoreOptions = self.options  # type: ignore[assignment]
        template = options.secret_name or ctx.settings.secret_name_template
        if ctx.dry_run:
            return StepResult(
                StepStatus.PLANNED,
                f"would store the replacement in Secrets Manager as {template}",
            )

        replacement = ctx.memory.get(REPLACEMENT_MEMORY_KEY)
        if replacement is None:
            minted = ctx.outputs.get("rotate", {}).get("new_access_key_id")
            return StepResult(
                StepStatus.FAILED,
                f"the secret of replacement {minted} is no longer held in memory",
                error_code="ReplacementSecretLost",
            )
        user = replacement["user_name"]
        new_key_id = replacement["access_key_id"]
        name = template.format(user_name=user)
        token = client_request_token(ctx.incident.id, new_key_id)
        value = json.dumps(
            {
                "AccessKeyId": new_key_id,
                "SecretAccessKey": replacement["secret_access_key"],
                "UserName": user,
                "IncidentId": ctx.incident.id,
            }
        )

        try:
            stored = self._write(ctx, name, token, value, options)
        except AwsCallFailed as exc:
            # Storage failed after the gateway's retries: disarm the replacement.
            ctx.memory.pop(REPLACEMENT_MEMORY_KEY, None)
            ctx.aws(
                "iam",
                "UpdateAccessKey",
                target=new_key_id,
                UserName=user,
                AccessKeyId=new_key_id,
                Status="Inactive",
            )
            log.error(
                "replacement_not_stored",
                new_access_key_id=new_key_id,
                error_code=exc.error_code,
            )
            return StepResult(
                StepStatus.FAILED,
                f"could not store the replacement in {name} ({exc.error_code}); the"
                f" replacement {new_key_id} was deactivated so no usable key is"
                " orphaned. The owner has no working key: store or mint one by hand.",
                error_code=exc.error_code,
                outputs={"deactivated_replacement": new_key_id},
            )

        ctx.memory.pop(REPLACEMENT_MEMORY_KEY, None)
        log.info("replacement_stored", secret_name=name, new_access_key_id=new_key_id)

        return StepResult(
            StepStatus.SUCCEEDED,
            f"replacement {new_key_id} stored in Secrets Manager secret {name}",
            outputs={
                "secret_name": name,
                "secret_arn": stored["ARN"],
                "version_id": stored.get("VersionId"),
                "new_access_key_id": new_key_id,
            },
        )

    def _write(
        self,
        ctx: ActionContext,
        name: str,
        token: str,
        value: str,
        options: StoreOptions,
    ) -> dict[str, Any]:
        try:
            described = ctx.aws("secretsmanager", "DescribeSecret", SecretId=name)
        except ResourceNotFound:
            params: dict[str, Any] = {
                "Name": name,
                "SecretString": value,
                "ClientRequestToken": token,
                "Description": f"Replacement access key, incident {ctx.incident.id}",
                "Tags": [{"Key": "responder:incident", "Value": ctx.incident.id}],
            }
            if options.kms_key_id:
                params["KmsKeyId"] = options.kms_key_id
            return ctx.aws("secretsmanager", "CreateSecret", target=name, **params)

        if described.get("DeletedDate"):
            self._restore(ctx, name)
        try:
            return self._put(ctx, name, token, value)
        except SecretScheduledForDeletion:
            # Scheduled for deletion between our read and our write.
            self._restore(ctx, name)
            return self._put(ctx, name, token, value)

    def _put(
        self, ctx: ActionContext, name: str, token: str, value: str
    ) -> dict[str, Any]:
        return ctx.aws(
            "secretsmanager",
            "PutSecretValue",
            target=name,
            SecretId=name,
            SecretString=value,
            ClientRequestToken=token,
        )

    def _restore(self, ctx: ActionContext, name: str) -> None:
        ctx.aws("secretsmanager", "RestoreSecret", target=name, SecretId=name)
        log.warning("secret_restored", secret_name=name)
