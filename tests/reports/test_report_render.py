"""Tests for rendering a report; CloudTrail text is treated as hostile."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest
from ctfakes import END, KEY, START, record, sample_report

from responder.reports.render import render_html, render_json, render_markdown
from responder.reports.sources import Coverage, Window

HOSTILE_AGENT = "evil|agent\n<script>alert(1)</script> [click](http://evil.example) `x`"
HOSTILE_MESSAGE = '"><img src=x onerror=alert(2)> ![img](http://evil.example/p.png)'
UNPAIRED_CELL = re.compile(r"(?<!\\)\|")
CODE_SPAN = re.compile(r"(`+)(.+?)(?<!`)\1(?!`)")


def _report(events, *, coverage=None):
    return sample_report(
        events,
        coverage=coverage,
        actions=[
            {
                "at": datetime(2024, 5, 1, 12, tzinfo=UTC),
                "service": "iam",
                "operation": "UpdateAccessKey",
                "target": KEY,
                "request_id": "req-responder",
                "outcome": "succeeded",
            }
        ],
        generated_at=datetime(2024, 5, 3, tzinfo=UTC),
    )


@pytest.fixture
def hostile_report():
    """Return a report whose CloudTrail text tries to inject markup."""
    events = [
        record(1, userAgent=HOSTILE_AGENT),
        record(
            2,
            event_name="Get|Object\u202e",
            errorCode="AccessDenied<b>",
            errorMessage=HOSTILE_MESSAGE,
            sourceIPAddress="``",
        ),
    ]
    coverage = Coverage(window=Window(START, END))
    coverage.regions_incomplete["eu-west-1"] = "ThrottlingException: <i>x</i>"

    return _report(events, coverage=coverage)


def _outside_code(markdown):
    return CODE_SPAN.sub("", markdown)


class TestRenderJson:
    def test_json_round_trips(self, hostile_report):
        """The JSON rendering parses back to the same report."""
        text = render_json(hostile_report)

        assert json.loads(text) == hostile_report
        assert text.endswith("\n")


class TestRenderHtml:
    def test_hostile_text_is_escaped(self, hostile_report):
        """Script and image markup from CloudTrail appears escaped, never raw."""
        page = render_html(hostile_report)

        assert "<script>" not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
        assert not re.search(r"<(script|img|iframe|link|object|a)\b", page, re.I)
        assert "&quot;&gt;&lt;img src=x onerror=alert(2)&gt;" in page
        assert "AccessDenied&lt;b&gt;" in page
        assert "ThrottlingException: &lt;i&gt;x&lt;/i&gt;" in page

    def test_page_is_self_contained(self, hostile_report):
        """The page loads nothing external and forbids scripts by policy."""
        page = render_html(hostile_report)

        assert "default-src 'none'" in page
        assert not re.search(r"\b(src|href)\s*=", page.replace("src=x", ""))
        assert "<style>" in page

    def test_bidi_override_is_neutralised(self, hostile_report):
        """A right-to-left override cannot reorder the page's text."""
        page = render_html(hostile_report)

        assert "\u202e" not in page
        assert "Get|Object\ufffd" in page

    def test_summary_comes_before_timeline(self, hostile_report):
        """Summary, timeline, failed calls, counts and actions appear in that order."""
        page = render_html(hostile_report)

        positions = [
            page.index(heading)
            for heading in (
                '<h2 id="summary">Summary</h2>',
                '<h2 id="timeline">Timeline</h2>',
                '<h2 id="failed">Failed calls',
                '<h2 id="counts">Successful calls</h2>',
                '<h2 id="responder-actions">What the responder did</h2>',
            )
        ]
        assert positions == sorted(positions)
        assert page.index("Coverage is incomplete") < page.index('id="timeline"')


class TestRenderMarkdown:
    def test_hostile_text_cannot_break_tables(self, hostile_report):
        """Each table row keeps its column count whatever the cells contain."""
        markdown = render_markdown(hostile_report)
        tables: list[list[str]] = []
        previous_blank = True
        for line in markdown.split("\n"):
            if line.startswith("|"):
                if previous_blank:
                    tables.append([])
                tables[-1].append(line)
            previous_blank = not line.startswith("|")

        assert len(tables) >= 5
        for table in tables:
            widths = {len(UNPAIRED_CELL.findall(row)) for row in table}
            assert len(widths) == 1

    def test_hostile_text_only_inside_code_spans(self, hostile_report):
        """Links, images and HTML from CloudTrail survive only as inert code."""
        markdown = render_markdown(hostile_report)
        outside = _outside_code(markdown)

        assert "<" not in outside
        assert "](" not in outside
        assert "[click]" not in outside
        assert "http://" not in outside
        assert "\u202e" not in markdown

    def test_newlines_in_values_do_not_start_new_lines(self, hostile_report):
        """A newline inside a user agent does not reach the output."""
        markdown = render_markdown(hostile_report)

        assert not any(line.startswith("<script>") for line in markdown.split("\n"))
        padded = (
            "`` evil\\|agent <script>alert(1)</script> [click](http://evil.example)"
        )
        assert padded + " `x` ``" in markdown

    def test_backtick_only_value_gets_a_longer_fence(self, hostile_report):
        """A value made of backticks is fenced by more backticks, with padding."""
        markdown = render_markdown(hostile_report)

        assert "``` `` ```" in markdown

    def test_summary_states_key_and_incomplete_coverage(self, hostile_report):
        """The summary names the key, counts and an incomplete region first."""
        markdown = render_markdown(hostile_report)
        summary = markdown.split("## Failed calls")[0]

        assert "| Access key | `" + KEY + "` |" in summary
        assert "| Events | 2 |" in summary
        assert "| Coverage | INCOMPLETE |" in summary
        assert "Region not read: `eu-west-1`" in summary

    def test_complete_report_has_no_alert(self):
        """A complete read shows no incomplete-coverage warning."""
        markdown = render_markdown(_report([record(1)]))

        assert "| Coverage | complete |" in markdown
        assert "incomplete" not in markdown.lower().split("## coverage")[0]
        assert "No failed calls." in markdown
