"""Playbook files are checked before anything runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import REPO

from responder.cli import main
from responder.exceptions import PlaybookValidationError
from responder.playbooks.loader import load_playbooks

GOOD_STEP = "  - name: resolve\n    action: access-key-resolve\n"


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "p.yaml").write_text(text, encoding="utf-8")
    return tmp_path


class TestValidation:
    def test_shipped_playbooks_are_valid(self):
        """The playbooks in the repo load."""
        playbooks = load_playbooks(REPO / "playbooks")

        assert "contain-long-term-key" in playbooks
        names = [s.name for s in playbooks["contain-long-term-key"].steps]
        assert names == [
            "resolve",
            "deactivate",
            "revoke-sessions",
            "rotate",
            "store",
            "report",
        ]

    @pytest.mark.parametrize(
        ("text", "problem"),
        [
            (
                "name: p\nsignals: [github]\nsteps:\n  - name: x\n    action: nope\n",
                "unknown action 'nope'",
            ),
            (
                "name: p\nsignals: [github]\nsteps:\n"
                + GOOD_STEP
                + "    options: {x: 1}\n",
                "option x: Extra inputs are not permitted",
            ),
            (
                "name: p\nsignals: [github]\nsteps:\n  - name: r\n"
                "    action: access-key-rotate\n"
                "    options: {delete_exposed_key_when_full: true}\n",
                "needs a blast-radius-report step before it",
            ),
            (
                "name: p\nsignals: [pager]\nsteps:\n" + GOOD_STEP,
                "signal source 'pager' is unknown",
            ),
            (
                "name: p\nsignals: [github]\nsteps:\n"
                + GOOD_STEP
                + "    needs: [later]\n",
                "not an earlier step",
            ),
            ("name: p\nsignals: [github]\nsteps: [\n", "cannot read YAML"),
            (
                "name: p\nsignals: [github]\nsteps:\n  - name: d\n"
                "    action: access-key-deactivate\n"
                "    options: {confirm_attempts: 0}\n",
                "confirm_attempts",
            ),
        ],
    )
    def test_bad_playbook_is_refused_with_reason(self, tmp_path, text, problem):
        """Unknown actions, bad options and bad ordering are load-time errors."""
        with pytest.raises(PlaybookValidationError) as raised:
            load_playbooks(write(tmp_path, text))

        assert problem in str(raised.value)

    def test_cli_validate_exit_codes(self, tmp_path, capsys):
        """`responder playbooks validate` says ok or lists problems with exit 1."""
        assert main(["playbooks", "validate", str(REPO / "playbooks")]) == 0
        assert "ok: contain-long-term-key" in capsys.readouterr().out

        bad = write(
            tmp_path,
            "name: p\nsignals: [github]\nsteps:\n  - name: x\n    action: nope\n",
        )
        assert main(["playbooks", "validate", str(bad)]) == 1
        assert "unknown action" in capsys.readouterr().err

    def test_service_refuses_invalid_playbook(self, tmp_path, make_services):
        """build_services raises before anything starts."""
        bad = write(
            tmp_path,
            "name: p\nsignals: [github]\nsteps:\n  - name: x\n    action: nope\n",
        )

        with pytest.raises(PlaybookValidationError):
            make_services(playbooks_dir=bad)
