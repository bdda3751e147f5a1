"""Tests for the report v2 formats: JSON Schema, HTML, Markdown, CSV and Chromium."""

from __future__ import annotations

import csv
import io
import json
import re
import struct
from datetime import UTC, datetime

import jsonschema
import pytest
from browser import CHROMIUM, INSTALL_HINT, dump_dom, screenshot
from ctfakes import CORPUS, INVICTUS, KEY, record, sample_report
from helpers import REPO

from responder.cli import main
from responder.reports import normalise_event, offline_report
from responder.reports.render import (
    render_csv,
    render_html,
    render_json,
    render_markdown,
    write_json,
)

SCHEMA = json.loads((REPO / "docs" / "report.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(
    SCHEMA, format_checker=jsonschema.FormatChecker()
)
STRATUS_FILES = sorted((CORPUS / "stratus-red-team_detonation-logs").glob("*.json"))
BUSIEST_INVICTUS_KEY = "AKIATFQR7NSC8Q4X20BJ"
ROLE_KEY = "ASIAROLESESSION00001"
BACKDOOR_KEY = "AKIABACKDOORKEY00001"
IMG_TAG = "<img src=x onerror=alert(1)>"
SECTIONS = [
    "summary",
    "open-items",
    "left-behind",
    "techniques",
    "derived-keys",
    "posture",
    "least-privilege",
    "timeline",
    "failed",
    "counts",
    "responder-actions",
    "coverage",
]
HEADING_ID = re.compile(r'<h2 id="([a-z-]+)"')


def _v2_report():
    """Return a hand-made v2 report: a role session and a backdoor key, hostile text."""
    events = [
        record(1, event_name="GetCallerIdentity", event_source="sts.amazonaws.com"),
        record(2, event_name="AssumeRole", event_source="sts.amazonaws.com"),
        record(3, key=ROLE_KEY, event_name=IMG_TAG, userAgent="=cmd|' /C calc'!A0"),
        record(
            4,
            event_name="CreateAccessKey",
            resources=[{"type": "AWS::IAM::User", "ARN": "backup-admin"}],
        ),
        record(5, key=BACKDOOR_KEY, event_name="ListBuckets", errorCode="Denied"),
    ]
    # Hand-made on purpose: the builder would drop keys it cannot trace.
    report = sample_report(events)
    report["events"] = [normalise_event(item)[0] for item in events]
    chains = {KEY: [KEY], ROLE_KEY: [KEY, ROLE_KEY], BACKDOOR_KEY: [KEY, BACKDOOR_KEY]}
    for event in report["events"]:
        event["chain"] = chains[event["access_key_id"]]
        event["techniques"] = (
            ["iam-create-access-key"]
            if event["event_name"] == "CreateAccessKey"
            else []
        )
    report["schema_version"] = 2
    report["derived_keys"] = [
        _derived(ROLE_KEY, "AssumeRole", "temporary", covered=False, number=2),
        _derived(BACKDOOR_KEY, "CreateAccessKey", "long-term", covered=False, number=4),
    ]
    report["open_items"] = [
        {
            "severity": "critical",
            "text": "Delete the key " + BACKDOOR_KEY + " created for " + IMG_TAG,
            "event_id": "evt-us-east-1-000004",
        }
    ]
    report["techniques"] = [
        {
            "id": "iam-create-access-key",
            "tactic": "persistence",
            "name": "Created an access key",
            "mitre": "T1098.001",
            "events": 1,
            "failed": 0,
            "first_at": "2024-05-01T10:00:04Z",
            "event_ids": ["evt-us-east-1-000004"],
        }
    ]
    report["left_behind"] = [
        {
            "kind": "access-key",
            "resource": BACKDOOR_KEY,
            "event_id": "evt-us-east-1-000004",
            "at": "2024-05-01T10:00:04Z",
            "by_key": KEY,
            "undo": "iam:DeleteAccessKey UserName=backup-admin AccessKeyId="
            + BACKDOOR_KEY,
            "needs_decision": False,
        }
    ]
    report["posture"] = {
        "user_name": "alice",
        "key_created_at": "2023-01-01T00:00:00Z",
        "key_age_days": 486,
        "other_keys": [],
        "mfa_devices": 0,
        "attached_policies": ["arn:aws:iam::aws:policy/AdministratorAccess"],
        "inline_policies": [],
        "groups": [],
        "quarantine_policy": None,
        "quarantine_note": None,
        "reach": ["*"],
        "problems": ["no MFA device"],
    }
    report["least_privilege"] = {
        "based_on": {
            "start": "2024-04-01T00:00:00Z",
            "end": "2024-05-01T00:00:00Z",
            "events": 3,
        },
        "actions": ["iam:ListUsers", "s3:List```Buckets"],
        "policy": {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Action": ["s3:List```Buckets"], "Resource": "*"}
            ],
        },
        "current_policies": ["arn:aws:iam::aws:policy/AdministratorAccess"],
        "note": "Review before applying.",
    }
    report["coverage"].update(
        data_events_visible=False,
        truncated=False,
        truncation_note=None,
        regions_not_read={},
    )
    report["summary"].update(
        derived_keys=2, techniques=["persistence"], left_behind=1, open_items=1
    )

    return report


def _derived(key, how, key_type, *, covered, number):
    return {
        "access_key_id": key,
        "parent": KEY,
        "obtained_by": how,
        "obtained_at": f"2024-05-01T10:00:0{number}Z",
        "event_id": f"evt-us-east-1-00000{number}",
        "type": key_type,
        "role_arn": "arn:aws:iam::111122223333:role/ops"
        if how == "AssumeRole"
        else None,
        "user_name": "backup-admin" if how == "CreateAccessKey" else None,
        "expires_at": "2024-05-01T11:00:02Z" if how == "AssumeRole" else None,
        "depth": 1,
        "events": 1,
        "covered_by_containment": covered,
        "coverage_note": "not covered until the role is handled",
    }


def _errors(report):
    return [error.message for error in VALIDATOR.iter_errors(report)]


def _stratus_report(path, tmp_path):
    """Return the offline report of the file's most active key, and its own events.

    A detonation without any access key (console login) is reported for a key
    it does not name: zero events.
    """
    records = json.loads(path.read_text())
    keys = [
        item["userIdentity"].get("accessKeyId")
        for item in records
        if isinstance(item.get("userIdentity"), dict)
    ]
    named = sorted({key for key in keys if key})
    key = max(named, key=keys.count) if named else KEY
    wrapped = tmp_path / "trail.json"
    wrapped.write_text(json.dumps({"Records": records}))

    return offline_report(access_key_id=key, path=str(wrapped)), keys.count(key)


@pytest.fixture
def v2_report():
    """Return the hand-made v2 report."""
    return _v2_report()


@pytest.fixture
def profile(tmp_path):
    """Return an empty Chromium profile folder, failing when Chromium is missing."""
    if not CHROMIUM.exists():
        pytest.fail(INSTALL_HINT)
    folder = tmp_path / "profile"
    folder.mkdir()

    return folder


class TestSchema:
    def test_check_schema_draft_2020_12_is_valid(self):
        """The schema file is itself a valid draft 2020-12 schema."""
        jsonschema.Draft202012Validator.check_schema(SCHEMA)

        assert SCHEMA["$schema"].endswith("/draft/2020-12/schema")
        assert SCHEMA["properties"]["schema_version"]["const"] == 2

    def test_validate_hand_made_v2_report_passes(self, v2_report):
        """A report with every v2 section filled in validates."""
        assert _errors(v2_report) == []

    def test_validate_offline_invictus_report_passes(self):
        """The offline report of the busiest Invictus key validates."""
        report = offline_report(access_key_id=BUSIEST_INVICTUS_KEY, path=str(INVICTUS))

        assert report["summary"]["events"] > 1000
        assert _errors(report) == []

    @pytest.mark.parametrize("path", STRATUS_FILES, ids=lambda path: path.stem)
    def test_validate_offline_stratus_report_passes(self, path, tmp_path):
        """The offline report of each Stratus detonation's main key validates."""
        report, own_events = _stratus_report(path, tmp_path)

        assert report["summary"]["events"] >= own_events
        assert _errors(report) == []

    def test_validate_report_without_events_passes(self, tmp_path):
        """An offline report that found no event of the key validates."""
        empty = tmp_path / "empty.json"
        empty.write_text('{"Records": []}')

        report = offline_report(access_key_id=KEY, path=str(empty))

        assert report["events"] == []
        assert _errors(report) == []

    def test_validate_sample_report_passes(self):
        """The report built like the sandbox incident's (ctfakes) validates."""
        report = sample_report(
            [record(1), record(2, errorCode="AccessDenied")],
            actions=[{"at": datetime(2024, 5, 1, 12, tzinfo=UTC), "outcome": "ok"}],
        )

        assert _errors(report) == []

    @pytest.mark.parametrize(
        ("path", "value"),
        [
            (("summary", "events"), "3"),
            (("events", 0, "time"), "2024-05-01 10:00:01"),
            (("open_items", 0, "severity"), "low"),
            (("derived_keys", 0, "depth"), 0),
            (("derived_keys", 0, "obtained_by"), ""),
            (("techniques", 0, "mitre"), "1098"),
            (("left_behind", 0, "needs_decision"), "no"),
            (("coverage", "truncated"), None),
            (("schema_version",), 1),
        ],
        ids=lambda item: str(item),
    )
    def test_validate_wrong_type_fails(self, v2_report, path, value):
        """A value of the wrong type or outside its set does not validate."""
        target = v2_report
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = value

        assert _errors(v2_report) != []

    @pytest.mark.parametrize(
        "path",
        [
            ("derived_keys",),
            ("posture",),
            ("events", 0, "chain"),
            ("derived_keys", 0, "coverage_note"),
            ("coverage", "data_events_visible"),
            ("summary", "open_items"),
        ],
        ids=lambda item: str(item),
    )
    def test_validate_missing_field_fails(self, v2_report, path):
        """A report missing a required field does not validate."""
        target = v2_report
        for part in path[:-1]:
            target = target[part]
        del target[path[-1]]

        assert _errors(v2_report) != []

    def test_validate_unknown_event_field_fails(self, v2_report):
        """Closed objects reject a field the contract does not name."""
        v2_report["events"][0]["secret_access_key"] = "x"

        assert _errors(v2_report) != []


class TestRenderHtmlV2:
    def test_render_v2_report_sections_in_reading_order(self, v2_report):
        """Every section is there, summary first and coverage last."""
        page = render_html(v2_report)

        assert HEADING_ID.findall(page) == SECTIONS

    def test_render_attacker_text_stays_text(self, v2_report):
        """An event name that is an image tag is escaped everywhere it appears."""
        page = render_html(v2_report)

        assert not re.search(r"<(script|img|iframe|link|object|a)\b", page, re.I)
        assert page.count("&lt;img src=x onerror=alert(1)&gt;") >= 2
        assert "default-src 'none'" in page
        assert not re.search(r"\b(src|href)\s*=", page.replace("src=x", ""))

    def test_render_timeline_filter_uses_indexes_only(self, v2_report):
        """One radio per key; rows carry index classes for each key of their chain."""
        page = render_html(v2_report)

        assert page.count('type="radio" name="tl"') == 4
        assert "#tl-1:checked ~ table tbody tr:not(.k1) { display: none; }" in page
        assert page.count('<tr class="k0 k1">') == 1
        assert page.count('<tr class="k0 k2">') == 1
        assert page.count('<tr class="k0">') == 3
        assert not re.search(r'(id|class|for)="[^"]*AKIA', page)

    def test_render_uncovered_key_and_policy_side_by_side(self, v2_report):
        """An uncovered derived key says NO; the policy sits beside the current ones."""
        page = render_html(v2_report)
        columns = page.split('<div class="columns">')[1]

        assert '<span class="tone-bad">NO</span>' in page
        assert columns.index("Suggested policy") < columns.index("Current policies")
        assert "s3:List```Buckets" in columns

    def test_render_v1_report_marks_v2_sections_missing(self):
        """A version 1 report renders, saying which sections it lacks."""
        report = sample_report([record(1)])
        report.pop("derived_keys", None)
        report.pop("open_items", None)

        page = render_html(report)

        assert "Not in this report (schema version 1)." in page
        assert HEADING_ID.findall(page) == SECTIONS

    def test_render_truncated_report_alerts(self, v2_report):
        """A truncated report says so in the summary, as an alert."""
        v2_report["coverage"].update(truncated=True, truncation_note="depth cap 3")

        page = render_html(v2_report)
        summary = page.split('id="open-items"')[0]

        assert 'class="alert">The report is truncated: depth cap 3' in summary


class TestRenderMarkdownV2:
    def test_render_v2_sections_in_reading_order(self, v2_report):
        """Markdown has the HTML's sections in the same order."""
        markdown = render_markdown(v2_report)
        headings = re.findall(r"^## (.+)$", markdown, re.M)

        assert headings == [
            "Summary",
            "Open items",
            "Left-behind resources",
            "Techniques",
            "Derived keys",
            "Posture of the owner",
            "Least-privilege suggestion",
            "Timeline",
            "Failed calls (attempts, not effects)",
            "Successful calls",
            "What the responder did",
            "Coverage",
        ]

    def test_render_policy_fence_outlasts_backticks(self, v2_report):
        """A backtick run in an action name cannot close the policy's code block."""
        markdown = render_markdown(v2_report)

        assert '\n````\n{\n  "Version": "2012-10-17",' in markdown
        assert markdown.count("\n````\n") == 2

    def test_render_open_item_text_is_code(self, v2_report):
        """Open-item text that carries attacker text is shown as a code span."""
        markdown = render_markdown(v2_report)

        assert "| critical | `Delete the key " + BACKDOOR_KEY in markdown
        assert "<img" not in re.sub(r"`[^`\n]*`", "", markdown)


class TestRenderCsv:
    def test_render_csv_has_one_row_per_event(self, v2_report):
        """The CSV has the header and one row per event, chain joined by `>`."""
        rows = list(csv.reader(io.StringIO(render_csv(v2_report))))

        assert rows[0] == [
            "time",
            "key",
            "chain",
            "action",
            "region",
            "source_ip",
            "user_agent",
            "error_code",
            "techniques",
            "resources",
        ]
        assert len(rows) == 1 + len(v2_report["events"])
        assert rows[3][2] == KEY + ">" + ROLE_KEY
        assert rows[4][8] == "iam-create-access-key"
        assert rows[4][9] == "backup-admin"

    @pytest.mark.parametrize(
        "value", ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx", " =1"]
    )
    def test_render_formula_prefix_is_neutralised(self, value):
        """A cell a spreadsheet would run as a formula starts with a quote."""
        report = sample_report([record(1, userAgent=value)])

        rows = list(csv.reader(io.StringIO(render_csv(report))))

        assert rows[1][6] == "'" + value

    def test_render_quotes_commas_and_newlines(self):
        """Commas, quotes and line breaks stay inside one quoted cell."""
        agent = 'a,"b"\nc'
        report = sample_report([record(1, userAgent=agent)])

        text = render_csv(report)
        rows = list(csv.reader(io.StringIO(text)))

        assert len(rows) == 2
        assert rows[1][6] == agent
        assert '"a,""b""\nc"' in text

    def test_render_v1_event_chain_is_own_key(self):
        """An event without a chain (version 1) shows its own key as the chain."""
        report = sample_report([record(1)])
        for event in report["events"]:
            event.pop("chain", None)

        rows = list(csv.reader(io.StringIO(render_csv(report))))

        assert rows[1][1:3] == [KEY, KEY]


class TestChromium:
    def test_dump_dom_shows_sections_and_no_injected_element(
        self, v2_report, tmp_path, profile
    ):
        """Chromium builds the sections in order and no element from attacker text."""
        page = tmp_path / "report.html"
        page.write_text(render_html(v2_report), encoding="utf-8")

        dom = dump_dom(page, profile)

        assert HEADING_ID.findall(dom) == SECTIONS
        assert not re.search(r"<(img|script|iframe)\b", dom, re.I)
        assert "&lt;img src=x onerror=alert(1)&gt;" in dom

    def test_screenshot_writes_png_of_window_size(self, v2_report, tmp_path, profile):
        """A screenshot of the page is a PNG of the asked window size."""
        page = tmp_path / "report.html"
        page.write_text(render_html(v2_report), encoding="utf-8")
        png = tmp_path / "report.png"

        screenshot(page, png, profile, size="1280,2000")
        data = png.read_bytes()

        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        assert struct.unpack(">II", data[16:24]) == (1280, 2000)
        assert len(data) > 20_000

    def test_dump_dom_without_chromium_raises_hint(self, monkeypatch, tmp_path):
        """Without Chromium the browser helper raises the install hint."""
        import browser

        monkeypatch.setattr(browser, "CHROMIUM", tmp_path / "no-chromium")

        with pytest.raises(FileNotFoundError, match="apt-get install -y chromium"):
            browser.dump_dom(tmp_path / "x.html", tmp_path)


class TestCliCsv:
    def test_report_format_csv_writes_timeline(self, tmp_path):
        """`responder report --format csv` writes the key's timeline as CSV."""
        trail = tmp_path / "trail.json"
        trail.write_text(json.dumps({"Records": [record(1), record(2)]}))
        out = tmp_path / "timeline.csv"

        status = main(
            [
                "report",
                "--access-key-id",
                KEY,
                "--cloudtrail",
                str(trail),
                "--format",
                "csv",
                "--out",
                str(out),
            ]
        )
        rows = list(csv.reader(io.StringIO(out.read_text(encoding="utf-8"))))

        assert status == 0
        assert [row[1] for row in rows] == ["key", KEY, KEY]


class TestHostileText:
    def test_lone_surrogate_renders_in_every_format(self, tmp_path):
        """A `\\ud800` in a trail file reaches no encoder as a lone surrogate."""
        key = "AKIA" + "S" * 16
        record = {
            "eventVersion": "1.08",
            "eventTime": "2024-05-01T10:00:00Z",
            "eventSource": "s3.amazonaws.com",
            "eventName": "ListBuckets",
            "awsRegion": "us-east-1",
            "eventID": "e-1",
            "userAgent": "\ud800evil",
            "userIdentity": {"type": "IAMUser", "accessKeyId": key},
        }
        (tmp_path / "a.json").write_text(
            json.dumps({"Records": [record]}), encoding="ascii"
        )
        report = offline_report(access_key_id=key, path=str(tmp_path))

        with (tmp_path / "out.json").open("w", encoding="utf-8") as out:
            write_json(report, out)
        for render in (render_json, render_markdown, render_html, render_csv):
            render(report).encode("utf-8")

        assert report["summary"]["events"] == 1
        assert json.loads((tmp_path / "out.json").read_text())["summary"]["events"]
