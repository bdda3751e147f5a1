"""The IAM policy in the repo matches what the registered actions call."""

from __future__ import annotations

import json

from helpers import REPO

from responder.aws.actions import REGISTRY, required_permissions


class TestPolicyDocument:
    def test_policy_lists_exactly_the_actions_permissions(self):
        """deploy/iam-policy.json grants each permission an action declares, no more."""
        policy = json.loads((REPO / "deploy" / "iam-policy.json").read_text())

        (statement,) = policy["Statement"]
        assert statement["Effect"] == "Allow"
        assert sorted(statement["Action"]) == required_permissions()

    def test_every_action_declares_permissions_and_a_snippet(self):
        """Each action's docstring ends with a playbook snippet naming it."""
        for name, action in REGISTRY.items():
            assert action.permissions, name
            assert f"action: {name}" in (action.__doc__ or ""), name
