"""Render a built report as JSON, Markdown or one self-contained HTML page.

Every string that came from CloudTrail is attacker-controlled. The layout is
built once as blocks whose cells are untrusted by default (`str`); only the
renderer's own labels are wrapped in `_Label`. Markdown puts untrusted text in
code spans, where links, HTML and emphasis are inert, and escapes the table
pipe; HTML escapes everything and forbids scripts with a content security
policy. Both replace control and bidi characters first.
"""

from __future__ import annotations

import html
import json
import re
import unicodedata
from dataclasses import dataclass
from typing import Any

__all__ = ["render_html", "render_json", "render_markdown"]

# Rows shown per count table and for failed calls; the JSON keeps them all.
_MAX_COUNT_ROWS = 50
_MAX_LISTED = 20
_BACKTICKS = re.compile(r"`+")


@dataclass(frozen=True)
class _Label:
    """Text the renderer wrote itself, shown as prose."""

    text: str


_Cell = str | int | bool | None | _Label


@dataclass(frozen=True)
class _Heading:
    level: int
    text: str


@dataclass(frozen=True)
class _Line:
    cells: list[_Cell]
    alert: bool = False


@dataclass(frozen=True)
class _Table:
    headers: list[str]
    rows: list[list[_Cell]]


_Block = _Heading | _Line | _Table


def render_json(report: dict[str, Any]) -> str:
    """Return the report as indented JSON text ending in a newline."""
    return json.dumps(report, indent=2, ensure_ascii=False) + "\n"


def render_markdown(report: dict[str, Any]) -> str:
    """Return the report as GitHub-flavoured Markdown, safe to paste anywhere.

    CloudTrail text appears only inside code spans, with `|`, line breaks and
    control characters neutralised, so it cannot break a table, add a link,
    an image or HTML.
    """
    out: list[str] = []
    for block in _blocks(report):
        if isinstance(block, _Heading):
            out.append("#" * block.level + " " + block.text)
        elif isinstance(block, _Line):
            text = " ".join(_md_cell(cell, in_table=False) for cell in block.cells)
            out.append("> **" + text + "**" if block.alert else text)
        else:
            out.append("| " + " | ".join(block.headers) + " |")
            out.append("|" + " --- |" * len(block.headers))
            for row in block.rows:
                cells = (_md_cell(cell, in_table=True) for cell in row)
                out.append("| " + " | ".join(cells) + " |")
        out.append("")

    return "\n".join(out)


def render_html(report: dict[str, Any]) -> str:
    """Return the report as one self-contained HTML page (inline CSS, no scripts).

    Every value is HTML-escaped, and the page's content security policy forbids
    scripts and every external resource.
    """
    body: list[str] = []
    for block in _blocks(report):
        if isinstance(block, _Heading):
            level = str(block.level)
            body.append("<h" + level + ">" + _escape(block.text) + "</h" + level + ">")
        elif isinstance(block, _Line):
            css = ' class="alert"' if block.alert else ""
            cells = " ".join(_html_cell(cell) for cell in block.cells)
            body.append("<p" + css + ">" + cells + "</p>")
        else:
            head = "".join("<th>" + _escape(text) + "</th>" for text in block.headers)
            rows = "".join(
                "<tr>"
                + "".join("<td>" + _html_cell(c) + "</td>" for c in row)
                + "</tr>"
                for row in block.rows
            )
            body.append(
                "<table><thead><tr>"
                + head
                + "</tr></thead><tbody>"
                + rows
                + "</tbody></table>"
            )

    title = "Blast-radius report " + str(report.get("access_key", {}).get("id"))

    return _PAGE.format(title=_escape(title), body="\n".join(body))


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" \
content="default-src 'none'; style-src 'unsafe-inline'">
<meta name="referrer" content="no-referrer">
<title>{title}</title>
<style>
body {{ font: 14px/1.45 system-ui, sans-serif; margin: 2em; color: #1a1a1a; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; }}
th, td {{ border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: left;
  vertical-align: top; }}
th {{ background: #f0f0f0; }}
code {{ font: 12px/1.3 ui-monospace, monospace; overflow-wrap: anywhere; }}
.alert {{ background: #fde8e8; border-left: 4px solid #c00; padding: 0.5em; }}
</style>
</head>
<body>
{body}
</body>
</html>
"""


def _blocks(report: dict[str, Any]) -> list[_Block]:
    summary = report.get("summary", {})
    coverage = report.get("coverage", {})
    failed = report.get("failed", {})
    counts = report.get("counts", {})
    events: list[dict[str, Any]] = report.get("events", [])
    blocks: list[_Block] = [_Heading(1, "Blast-radius report")]

    blocks.append(_Heading(2, "Summary"))
    blocks.append(_Table(["Field", "Value"], _summary_rows(report)))
    if not summary.get("coverage_complete", False):
        blocks.extend(_incomplete_lines(coverage))

    blocks.append(_Heading(2, "Failed calls (attempts, not effects)"))
    if failed.get("total"):
        blocks.append(_count_table("Error code", failed.get("by_error_code", [])))
        blocks.append(_count_table("Action", failed.get("by_action", [])))
        failed_events = [event for event in events if event.get("error_code")]
        blocks.append(
            _Table(
                ["Time", "Action", "Region", "Error code", "Message", "Source IP"],
                [
                    [
                        event.get("time"),
                        event.get("action"),
                        event.get("region"),
                        event.get("error_code"),
                        event.get("error_message"),
                        event.get("source_ip"),
                    ]
                    for event in failed_events
                ],
            )
        )
    else:
        blocks.append(_Line([_Label("No failed calls.")]))

    blocks.append(_Heading(2, "Successful calls"))
    for title, name in (
        ("Service", "by_service"),
        ("Action", "by_action"),
        ("Region", "by_region"),
        ("Source IP", "by_source_ip"),
        ("User agent", "by_user_agent"),
    ):
        blocks.append(_count_table(title, counts.get(name, [])))

    blocks.append(_Heading(2, "Timeline"))
    blocks.append(
        _Table(
            [
                "Time",
                "Action",
                "Region",
                "Result",
                "Source IP",
                "User agent",
                "Resources",
            ],
            [_timeline_row(event) for event in events],
        )
    )

    blocks.append(_Heading(2, "What the responder did"))
    blocks.append(
        _Table(
            ["At", "Operation", "Target", "Outcome", "Request ID"],
            [
                [
                    action.get("at"),
                    _join(action.get("service"), action.get("operation")),
                    action.get("target"),
                    action.get("outcome"),
                    action.get("request_id"),
                ]
                for action in report.get("responder_actions", [])
            ],
        )
    )

    blocks.append(_Heading(2, "Coverage"))
    blocks.append(_Table(["Field", "Value"], _coverage_rows(coverage)))
    for note in coverage.get("notes", []):
        blocks.append(_Line([_Label(note)]))

    return blocks


def _summary_rows(report: dict[str, Any]) -> list[list[_Cell]]:
    key = report.get("access_key", {})
    window = report.get("window", {})
    summary = report.get("summary", {})
    complete = summary.get("coverage_complete", False)

    return [
        [_Label("Access key"), key.get("id")],
        [_Label("Key type"), key.get("type")],
        [_Label("Owner"), key.get("owner")],
        [_Label("Account"), key.get("account_id")],
        [_Label("Incident"), report.get("incident_id")],
        [_Label("Window start"), window.get("start") or _Label("unbounded")],
        [_Label("Window end"), window.get("end") or _Label("unbounded")],
        [_Label("Events"), summary.get("events")],
        [_Label("Succeeded"), summary.get("succeeded")],
        [_Label("Failed"), summary.get("failed")],
        [_Label("First event"), summary.get("first_event_at")],
        [_Label("Last event"), summary.get("last_event_at")],
        [_Label("Regions with activity"), ", ".join(summary.get("regions", []))],
        [_Label("Coverage"), _Label("complete" if complete else "INCOMPLETE")],
        [_Label("Generated"), report.get("generated_at")],
    ]


def _incomplete_lines(coverage: dict[str, Any]) -> list[_Block]:
    lines: list[_Block] = [
        _Line([_Label("Coverage is incomplete: events may be missing.")], alert=True)
    ]
    for kind, items in (
        ("Region not read:", coverage.get("regions_incomplete", {})),
        ("Source not read:", coverage.get("sources_incomplete", {})),
        ("File not read:", coverage.get("files_failed", {})),
    ):
        for name, reason in list(items.items())[:_MAX_LISTED]:
            lines.append(_Line([_Label(kind), name, reason], alert=True))
        if len(items) > _MAX_LISTED:
            more = str(len(items) - _MAX_LISTED) + " more in the JSON report"
            lines.append(_Line([_Label(kind), _Label(more)], alert=True))

    return lines


def _coverage_rows(coverage: dict[str, Any]) -> list[list[_Cell]]:
    problems = coverage.get("parse_problems_by_field", {})

    return [
        [_Label("Sources"), ", ".join(coverage.get("sources", []))],
        [_Label("Regions read"), ", ".join(coverage.get("regions_read", []))],
        [
            _Label("Regions not read"),
            ", ".join(coverage.get("regions_incomplete", {})) or _Label("none"),
        ],
        [_Label("Files read"), coverage.get("files_read")],
        [_Label("Files skipped (not log files)"), coverage.get("files_skipped")],
        [_Label("Files that failed"), len(coverage.get("files_failed", {}))],
        [_Label("Parse problems"), coverage.get("parse_problems")],
        [
            _Label("Parse problems by field"),
            ", ".join(name + "=" + str(count) for name, count in problems.items())
            or _Label("none"),
        ],
    ]


def _count_table(title: str, items: list[dict[str, Any]]) -> _Table:
    rows: list[list[_Cell]] = [
        [item.get("value"), item.get("count")] for item in items[:_MAX_COUNT_ROWS]
    ]
    if len(items) > _MAX_COUNT_ROWS:
        hidden = sum(int(item.get("count") or 0) for item in items[_MAX_COUNT_ROWS:])
        label = str(len(items) - _MAX_COUNT_ROWS) + " more values (see JSON)"
        rows.append([_Label(label), hidden])

    return _Table([title, "Count"], rows)


def _timeline_row(event: dict[str, Any]) -> list[_Cell]:
    resources = [
        resource.get("name") or resource.get("type") or ""
        for resource in event.get("resources", [])
        if isinstance(resource, dict)
    ]

    return [
        event.get("time"),
        event.get("action"),
        event.get("region"),
        event.get("error_code") or _Label("ok"),
        event.get("source_ip"),
        event.get("user_agent"),
        ", ".join(resources) if resources else None,
    ]


def _join(service: object, operation: object) -> str | None:
    if isinstance(service, str) and isinstance(operation, str):
        return service + ":" + operation

    return operation if isinstance(operation, str) else None


def _neutralise(text: str) -> str:
    """Replace control, format and line-separator characters.

    Whitespace controls become a space; the rest (bidi overrides, zero-width
    characters, NUL...) become U+FFFD, so a reader sees that something was there.
    """
    out: list[str] = []
    for char in text:
        category = unicodedata.category(char)
        if char in "\t\n\r\v\f" or category in ("Zl", "Zp"):
            out.append(" ")
        elif category in ("Cc", "Cf"):
            out.append("\ufffd")
        else:
            out.append(char)

    return "".join(out)


def _md_cell(cell: _Cell, *, in_table: bool) -> str:
    if cell is None:
        return "—"
    if isinstance(cell, bool):
        return "yes" if cell else "no"
    if isinstance(cell, int):
        return str(cell)
    if isinstance(cell, _Label):
        return cell.text
    if cell == "":
        return '""'

    return _md_code(_neutralise(cell), in_table=in_table)


def _md_code(text: str, *, in_table: bool) -> str:
    """Return `text` as a code span, fenced by more backticks than it contains."""
    if in_table:
        # GFM splits table cells on `|` even inside code spans, unless escaped.
        text = text.replace("|", "\\|")
    longest = max((len(run) for run in _BACKTICKS.findall(text)), default=0)
    fence = "`" * (longest + 1)
    if text.startswith(("`", " ")) or text.endswith(("`", " ")):
        text = " " + text + " "

    return fence + text + fence


def _html_cell(cell: _Cell) -> str:
    if cell is None:
        return "—"
    if isinstance(cell, bool):
        return "yes" if cell else "no"
    if isinstance(cell, int):
        return str(cell)
    if isinstance(cell, _Label):
        return _escape(cell.text)

    return "<code>" + _escape(cell) + "</code>"


def _escape(text: str) -> str:
    return html.escape(_neutralise(text), quote=True)
