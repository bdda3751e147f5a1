"""Load playbook files and check them before anything runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from responder.exceptions import PlaybookValidationError
from responder.playbooks.models import Playbook

__all__ = ["SIGNAL_SOURCES", "load_playbooks", "select_playbook"]

SIGNAL_SOURCES = frozenset(
    {
        "github",
        "manual",
        "guardduty",
        "health",
        "trustedadvisor",
        "partner",
        "scanner",
        "trace",
    }
)


def load_playbooks(directory: Path) -> dict[str, Playbook]:
    """Load and validate every `*.yaml`/`*.yml` file in `directory`.

    Raises:
        PlaybookValidationError: listing every problem in every file.
    """
    # Imported here: the registry imports the actions, which import AWS code.
    from responder.aws.actions import REGISTRY

    problems: list[str] = []
    playbooks: dict[str, Playbook] = {}
    files = sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")])
    if not files:
        raise PlaybookValidationError([f"{directory}: no playbook files (*.yaml)"])

    for path in files:
        playbook = _parse(path, problems)
        if playbook is None:
            continue
        problems.extend(f"{path.name}: {p}" for p in _check(playbook, REGISTRY))
        if playbook.name in playbooks:
            problems.append(
                f"{path.name}: playbook name {playbook.name!r} is used twice"
            )
        playbooks[playbook.name] = playbook

    if problems:
        raise PlaybookValidationError(problems)

    return playbooks


def select_playbook(
    playbooks: dict[str, Playbook], source: str, access_key_id: str
) -> Playbook:
    """Return the first playbook (by name) for a signal `source` and key type.

    `ASIA` keys are temporary, every other key long-term.

    Raises:
        PlaybookValidationError: no playbook applies.
    """
    key_type = "temporary" if access_key_id.startswith("ASIA") else "long-term"
    for name in sorted(playbooks):
        playbook = playbooks[name]
        if source in playbook.signals and key_type in playbook.keys:
            return playbook

    msg = f"no playbook applies to {source!r} signals for {key_type} keys"
    raise PlaybookValidationError([msg])


def _parse(path: Path, problems: list[str]) -> Playbook | None:
    try:
        raw: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        problems.append(f"{path.name}: cannot read YAML: {exc}")
        return None
    try:
        return Playbook.model_validate(raw)
    except ValidationError as exc:
        problems.extend(
            f"{path.name}: {'.'.join(map(str, err['loc'])) or 'file'}: {err['msg']}"
            for err in exc.errors()
        )
        return None


def _check(playbook: Playbook, registry: dict[str, Any]) -> list[str]:
    problems = [
        f"signal source {source!r} is unknown; known: {sorted(SIGNAL_SOURCES)}"
        for source in playbook.signals
        if source not in SIGNAL_SOURCES
    ]
    seen: list[str] = []
    for step in playbook.steps:
        where = f"step {step.name!r}"
        if step.name in seen:
            problems.append(f"{where}: name used twice")
        problems.extend(
            f"{where}: needs {need!r}, which is not an earlier step"
            for need in step.needs
            if need not in seen
        )
        seen.append(step.name)
        action = registry.get(step.action)
        if action is None:
            problems.append(
                f"{where}: unknown action {step.action!r}; known: {sorted(registry)}"
            )
            continue
        try:
            options = action.Options.model_validate(step.options)
        except ValidationError as exc:
            problems.extend(
                f"{where}: option {'.'.join(map(str, err['loc']))}: {err['msg']}"
                for err in exc.errors()
            )
            continue
        problems.extend(
            f"{where}: {p}" for p in action(options).validate(playbook, step)
        )

    return problems
