"""What every playbook action declares, and what it is handed when it runs."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict

from responder.aws.session import AwsCall, AwsGateway, is_mutating
from responder.store.models import StepStatus

if TYPE_CHECKING:
    from responder.aws.accounts import AccountRouter
    from responder.config import Settings
    from responder.playbooks.models import Playbook, StepSpec
    from responder.store.models import Incident
    from responder.store.service import Store

__all__ = [
    "Action",
    "ActionContext",
    "Halt",
    "NoOptions",
    "StepResult",
]


class NoOptions(BaseModel):
    """Options of an action that takes none."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class Halt:
    """Ends the playbook after this step: only `always` steps still run."""

    outcome: str
    reason: str


@dataclass
class StepResult:
    """What a step did: a status, a sentence for people, outputs for later steps."""

    status: StepStatus
    message: str
    outputs: dict[str, Any] = field(default_factory=dict)
    error_code: str | None = None
    halt: Halt | None = None
    request_ids: list[str] = field(default_factory=list)


@dataclass
class ActionContext:
    """Everything a running step may use.

    `outputs` holds the recorded outputs of earlier steps by step name. `memory` is
    process-only state shared by the steps of one run (a minted secret lives there
    and nowhere else); it is empty after a restart.
    """

    incident: Incident
    step_name: str
    position: int
    settings: Settings
    gateway: AwsGateway
    store: Store
    dry_run: bool
    outputs: dict[str, dict[str, Any]]
    memory: dict[str, Any]
    previous_outputs: dict[str, Any]
    checkpoint_state: dict[str, Any]
    now: Callable[[], datetime]
    sleep: Callable[[float], None]
    accounts: AccountRouter
    # Opens (or joins) the incident of another key this one led to; returns its ID.
    open_related: Callable[[str, str], str | None] | None = None
    request_ids: list[str] = field(default_factory=list)

    def use_account(self, account_id: str) -> None:
        """Make every later call of this step run with `account_id`'s credentials."""
        self.gateway = self.accounts.gateway_for(account_id)

    def aws(
        self,
        service: str,
        operation: str,
        *,
        target: str | None = None,
        region: str | None = None,
        idempotent: bool = True,
        **params: Any,
    ) -> dict[str, Any]:
        """Call AWS through the gateway; mutating calls land in the audit trail."""
        return self.gateway.call(
            service,
            operation,
            region=region,
            idempotent=idempotent,
            target=target,
            observer=self._observe,
            **params,
        )

    def checkpoint(self, **state: Any) -> None:
        """Persist state a rerun of this step needs (never a secret)."""
        self.checkpoint_state.update(state)
        self.store.update_step(
            incident_id=self.incident.id,
            position=self.position,
            checkpoint=self.checkpoint_state,
        )

    def _observe(self, call: AwsCall) -> None:
        if call.request_id:
            self.request_ids.append(call.request_id)
        if is_mutating(call.operation):
            self.store.append_audit(
                incident_id=self.incident.id,
                step=self.step_name,
                service=call.service,
                operation=call.operation,
                region=call.region,
                target=call.target,
                request_id=call.request_id,
                outcome=call.error_code or "succeeded",
            )


class Action(ABC):
    """A registered step type; subclasses declare options, permissions and `run`."""

    name: ClassVar[str]
    Options: ClassVar[type[BaseModel]] = NoOptions
    permissions: ClassVar[tuple[str, ...]] = ()
    # Its result lives partly in `memory`: a resumed run must redo it if a later
    # step still needs that part.
    volatile: ClassVar[bool] = False
    # It changes AWS: on a protected principal it waits for a person's approval.
    mutates: ClassVar[bool] = False
    # It waits for approval unless the playbook step says `approval: false`.
    approval_by_default: ClassVar[bool] = False
    # Done once it succeeded: a reopened incident does not repeat it (a second
    # replacement key would only confuse the owner).
    once_per_incident: ClassVar[bool] = False

    def __init__(self, options: BaseModel) -> None:
        self.options = options

    def validate(self, playbook: Playbook, step: StepSpec) -> list[str]:
        """Return problems with this step's place in `playbook` (checked at load)."""
        return []

    @abstractmethod
    def run(self, ctx: ActionContext) -> StepResult:
        """Do the step (or, when `ctx.dry_run`, say what it would do)."""
