"""Render a built report as JSON, Markdown, CSV or one self-contained HTML page.

Every string that came from CloudTrail is attacker-controlled. The layout is
built once as blocks whose cells are untrusted by default (`str`); only the
renderer's own labels are wrapped in `_Label`. Markdown puts untrusted text in
code spans, where links, HTML and emphasis are inert, and escapes the table
pipe; HTML escapes everything and forbids scripts with a content security
policy. Both replace control and bidi characters first. CSV keeps the text as
data but defuses cells a spreadsheet would read as a formula.

The renderers accept schema version 1 and 2 reports: a section whose data is
missing is shown as not available rather than failing.
"""

from __future__ import annotations

import csv
import html
import io
import json
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import IO, Any

__all__ = [
    "render_csv",
    "render_html",
    "render_json",
    "render_markdown",
    "write_json",
]

# Rows shown per count table and for failed calls; the JSON keeps them all.
_MAX_COUNT_ROWS = 50
_MAX_LISTED = 20
# Event IDs shown per technique row; the JSON lists up to 20.
_MAX_TECHNIQUE_EVENTS = 3
_BACKTICKS = re.compile(r"`+")
# A spreadsheet reads a cell starting with one of these as a formula.
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
_CSV_COLUMNS = (
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
)
# HTML columns whose values read badly when wrapped (times, key IDs, codes),
# and columns of long text that must keep a readable width.
_WIDE_COLUMNS = frozenset(
    {
        "Action",
        "Result",
        "Error code",
        "Role / user",
        "Resource",
        "Undo with",
        "Technique",
    }
)
_NOWRAP_COLUMNS = frozenset(
    {
        "Time",
        "At",
        "First",
        "Expires",
        "Created",
        "Key",
        "Parent",
        "By key",
        "Obtained",
        "Event ID",
        "Severity",
        "Type",
        "Region",
        "MITRE",
        "Status",
        "Source IP",
        "Tactic",
        "Kind",
        "Covered",
    }
)
_SEVERITY_TONES = {"critical": "critical", "high": "high", "medium": "medium"}


@dataclass(frozen=True)
class _Label:
    """Text the renderer wrote itself, shown as prose; `tone` picks a colour."""

    text: str
    tone: str | None = None


@dataclass(frozen=True)
class _Text:
    """Untrusted prose: escaped plain text in HTML, a code span in Markdown."""

    text: str


@dataclass(frozen=True)
class _Stack:
    """Cells shown on separate lines in HTML, side by side in Markdown."""

    parts: tuple[_Cell, ...]


_Cell = str | int | bool | None | _Label | _Text | _Stack


@dataclass(frozen=True)
class _Heading:
    level: int
    text: str
    anchor: str | None = None


@dataclass(frozen=True)
class _Line:
    cells: list[_Cell]
    alert: bool = False


@dataclass(frozen=True)
class _Table:
    headers: list[str]
    rows: list[list[_Cell]]


@dataclass(frozen=True)
class _Stats:
    """Headline numbers: (label, value); labels in `alerts` are flagged when > 0."""

    items: list[tuple[str, _Cell]]
    alerts: frozenset[str] = frozenset()


@dataclass(frozen=True)
class _Code:
    """Preformatted text (a JSON document); untrusted."""

    text: str


@dataclass(frozen=True)
class _Columns:
    """Blocks shown side by side in HTML, one after the other in Markdown."""

    columns: list[list[_Block]]


@dataclass(frozen=True)
class _Timeline:
    """The event table, filterable by the keys of each row's chain in HTML."""

    keys: list[tuple[str, str]]
    headers: list[str]
    rows: list[tuple[list[str], list[_Cell]]] = field(default_factory=list)


_Block = _Heading | _Line | _Table | _Stats | _Code | _Columns | _Timeline


def render_json(report: dict[str, Any]) -> str:
    """Return the report as indented JSON text ending in a newline."""
    # ASCII escapes keep lone surrogates (attacker-written) valid to write.
    return json.dumps(report, indent=2) + "\n"


def write_json(report: dict[str, Any], out: IO[str]) -> None:
    """Write `render_json(report)` to `out` piece by piece, never whole in memory."""
    json.dump(report, out, indent=2)
    out.write("\n")


def render_markdown(report: dict[str, Any]) -> str:
    """Return the report as GitHub-flavoured Markdown, safe to paste anywhere.

    CloudTrail text appears only inside code spans or fenced code blocks, with
    `|`, line breaks and control characters neutralised, so it cannot break a
    table, add a link, an image or HTML.
    """
    out: list[str] = []
    for block in _blocks(report):
        out.extend(_md_block(block))

    return "\n".join(out)


def render_html(report: dict[str, Any]) -> str:
    """Return the report as one self-contained HTML page (inline CSS, no scripts).

    Every value is HTML-escaped, and the page's content security policy forbids
    scripts and every external resource. The timeline is filtered by key with
    radio buttons and CSS alone.
    """
    blocks = _blocks(report)
    body = "\n".join(_html_block(block) for block in blocks)
    timelines = [block for block in blocks if isinstance(block, _Timeline)]
    filter_css = _filter_css(len(timelines[0].keys)) if timelines else ""
    title = "Blast-radius report " + str(report.get("access_key", {}).get("id"))

    return _PAGE.format(title=_escape(title), body=body, style=_STYLE + filter_css)


def render_csv(report: dict[str, Any]) -> str:
    """Return the timeline as CSV, one row per event, with a header row.

    Columns: time, key, chain (keys from the exposed one, `>`-separated),
    action, region, source_ip, user_agent, error_code, techniques and resources
    (space-separated). A cell starting with `=`, `+`, `-`, `@`, a tab or a
    carriage return gets a leading `'`, so no spreadsheet runs it as a formula.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
    writer.writerow(_CSV_COLUMNS)
    for event in report.get("events", []):
        row = [
            event.get("time"),
            event.get("access_key_id"),
            ">".join(_strings(_chain(event))),
            event.get("action"),
            event.get("region"),
            event.get("source_ip"),
            event.get("user_agent"),
            event.get("error_code"),
            " ".join(_strings(event.get("techniques"))),
            " ".join(_resource_names(event)),
        ]
        writer.writerow([_csv_cell(value) for value in row])

    return buffer.getvalue()


_STYLE = """
:root { color-scheme: light; --ink: #1c2330; --muted: #5b6575; --line: #d9dee7;
  --soft: #f4f6f9; --accent: #1f4e8c; --bad: #b3261e; --bad-bg: #fdecea;
  --warn: #8a5300; --warn-bg: #fff4e0; --ok: #1e6b34; --ok-bg: #e7f5ea; }
* { box-sizing: border-box; }
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto,
  "Liberation Sans", sans-serif; margin: 0; color: var(--ink); background: #fff; }
main { max-width: 1480px; margin: 0 auto; padding: 28px 28px 64px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h1 + p { color: var(--muted); margin: 0 0 20px; }
h2 { font-size: 19px; margin: 36px 0 10px; padding-bottom: 6px;
  border-bottom: 2px solid var(--line); color: var(--accent); }
h3 { font-size: 15px; margin: 18px 0 6px; }
p { margin: 6px 0; }
table { border-collapse: collapse; margin: 6px 0 18px; width: 100%;
  font-size: 13.5px; }
th, td { border-bottom: 1px solid var(--line); padding: 5px 6px; text-align: left;
  vertical-align: top; }
th { background: var(--soft); font-weight: 600; white-space: nowrap; }
tbody tr:nth-child(even) { background: #fafbfc; }
td.nw { white-space: nowrap; }
td.w { min-width: 172px; }
/* Timeline user agents are long and repeat: two lines here, in full in the
   user-agent counts, the JSON and the CSV. */
table.timeline td.ua code { display: -webkit-box; -webkit-line-clamp: 2;
  -webkit-box-orient: vertical; overflow: hidden; }
table.kv { width: auto; min-width: 60%; }
table.kv td:first-child { width: 260px; color: var(--muted); }
code { font: 12.5px/1.35 ui-monospace, "DejaVu Sans Mono", "Liberation Mono",
  monospace; overflow-wrap: anywhere; }
pre { background: var(--soft); border: 1px solid var(--line); border-radius: 6px;
  padding: 10px 12px; overflow: auto; max-height: 420px; margin: 6px 0; }
.alert { background: var(--bad-bg); border-left: 4px solid var(--bad);
  padding: 8px 12px; border-radius: 0 4px 4px 0; }
.stats { display: flex; flex-wrap: wrap; gap: 10px; margin: 12px 0 18px; }
.stat { border: 1px solid var(--line); border-radius: 8px; padding: 8px 14px;
  min-width: 118px; background: var(--soft); }
.stat b { display: block; font-size: 22px; line-height: 1.2; }
.stat span { color: var(--muted); font-size: 12.5px; }
.stat.flag { background: var(--bad-bg); border-color: #f1b8b3; }
.stat.flag b { color: var(--bad); }
.columns { display: grid; grid-template-columns: 1fr 1fr; gap: 24px; }
.tone-critical, .tone-bad { color: var(--bad); font-weight: 600; }
.tone-high, .tone-warn { color: var(--warn); font-weight: 600; }
.tone-medium { color: var(--accent); font-weight: 600; }
.tone-ok { color: var(--ok); font-weight: 600; }
.tone-critical, .tone-high, .tone-medium { text-transform: uppercase;
  font-size: 12px; letter-spacing: 0.03em; }
.filter > input { position: absolute; opacity: 0; pointer-events: none; }
.keys { display: flex; flex-wrap: wrap; gap: 6px; margin: 6px 0 10px; }
.keys label { border: 1px solid var(--line); border-radius: 14px;
  padding: 2px 10px; cursor: pointer; font-size: 13px; background: #fff; }
.keys label:hover { border-color: var(--accent); }
#tl-all:checked ~ .keys label[for=tl-all] { background: var(--accent);
  color: #fff; border-color: var(--accent); }
"""

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" \
content="default-src 'none'; style-src 'unsafe-inline'">
<meta name="referrer" content="no-referrer">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{style}</style>
</head>
<body>
<main>
{body}
</main>
</body>
</html>
"""


def _filter_css(keys: int) -> str:
    """Return the rules that show only the checked key's rows (ids are indexes)."""
    rules: list[str] = []
    for index in range(keys):
        rules.append(
            f"#tl-{index}:checked ~ table tbody tr:not(.k{index}) "
            "{ display: none; }\n"
            f"#tl-{index}:checked ~ .keys label[for=tl-{index}] "
            "{ background: var(--accent); color: #fff; border-color: var(--accent); }"
        )

    return "\n".join(rules) + "\n"


# Layout: the sections in reading order, shared by Markdown and HTML.


def _blocks(report: dict[str, Any]) -> list[_Block]:
    key = report.get("access_key", {})
    blocks: list[_Block] = [
        _Heading(1, "Blast-radius report"),
        _Line([_Label("Access key"), key.get("id"), _Label("of"), key.get("owner")]),
    ]

    blocks.extend(_summary_blocks(report))
    blocks.extend(_open_item_blocks(report))
    blocks.extend(_left_behind_blocks(report))
    blocks.extend(_technique_blocks(report))
    blocks.extend(_derived_key_blocks(report))
    blocks.extend(_posture_blocks(report))
    blocks.extend(_least_privilege_blocks(report))
    blocks.extend(_timeline_blocks(report))
    blocks.extend(_failed_blocks(report))
    blocks.extend(_count_blocks(report))
    blocks.extend(_responder_blocks(report))
    blocks.extend(_coverage_blocks(report))

    return blocks


def _summary_blocks(report: dict[str, Any]) -> list[_Block]:
    summary = report.get("summary", {})
    coverage = report.get("coverage", {})
    blocks: list[_Block] = [_Heading(2, "Summary", "summary")]

    blocks.append(
        _Stats(
            [
                ("events", summary.get("events")),
                ("succeeded", summary.get("succeeded")),
                ("failed", summary.get("failed")),
                ("derived keys", summary.get("derived_keys")),
                ("open items", summary.get("open_items")),
                ("left behind", summary.get("left_behind")),
                ("techniques", len(report.get("techniques") or [])),
            ],
            alerts=frozenset({"open items", "left behind", "derived keys"}),
        )
    )
    if not summary.get("coverage_complete", False):
        blocks.extend(_incomplete_lines(coverage))
    if coverage.get("truncated"):
        note = coverage.get("truncation_note") or "derived keys were capped"
        blocks.append(
            _Line([_Label("The report is truncated:"), _prose(note)], alert=True)
        )
    blocks.append(_Table(["Field", "Value"], _summary_rows(report)))

    return blocks


def _summary_rows(report: dict[str, Any]) -> list[list[_Cell]]:
    key = report.get("access_key", {})
    window = report.get("window", {})
    summary = report.get("summary", {})
    coverage = report.get("coverage", {})
    complete = summary.get("coverage_complete", False)
    data_events = coverage.get("data_events_visible")

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
        [_Label("Regions with activity"), _joined(summary.get("regions"))],
        [_Label("Tactics seen"), _joined(summary.get("techniques"))],
        [
            _Label("Coverage"),
            _Label("complete", "ok") if complete else _Label("INCOMPLETE", "bad"),
        ],
        [
            _Label("Data events (S3 object reads…)"),
            _Label("unknown")
            if data_events is None
            else _Label("visible" if data_events else "not visible (no trail files)"),
        ],
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


def _v2_section(
    report: dict[str, Any], field: str, title: str, anchor: str, when_empty: str
) -> tuple[list[_Block], list[Any]]:
    """Return a schema-2 list section's heading and its items.

    A report without the field (schema 1) or with an empty list gets a line
    saying so under the heading, and no items.
    """
    items = report.get(field)
    blocks: list[_Block] = [_Heading(2, title, anchor)]
    if items is None:
        blocks.append(_Line([_Label("Not in this report (schema version 1).")]))
        return blocks, []
    if not items:
        blocks.append(_Line([_Label(when_empty)]))

    return blocks, list(items)


def _open_item_blocks(report: dict[str, Any]) -> list[_Block]:
    blocks, items = _v2_section(
        report,
        "open_items",
        "Open items",
        "open-items",
        "None found. Check the coverage below before closing the incident.",
    )
    if not items:
        return blocks

    rows: list[list[_Cell]] = []
    for item in items:
        severity = item.get("severity")
        tone = _SEVERITY_TONES.get(severity) if isinstance(severity, str) else None
        rows.append(
            [
                _Label(str(severity), tone) if tone else severity,
                _prose(item.get("text")),
                item.get("event_id"),
            ]
        )
    blocks.append(_Table(["Severity", "What to do", "Event ID"], rows))

    return blocks


def _left_behind_blocks(report: dict[str, Any]) -> list[_Block]:
    blocks, items = _v2_section(
        report,
        "left_behind",
        "Left-behind resources",
        "left-behind",
        "No resources created or changed by the key.",
    )
    if not items:
        return blocks

    rows: list[list[_Cell]] = [
        [
            item.get("kind"),
            item.get("resource"),
            item.get("at"),
            item.get("by_key"),
            item.get("undo"),
            _decision(item.get("needs_decision")),
        ]
        for item in items
    ]
    headers = ["Kind", "Resource", "At", "By key", "Undo with", "Needs decision"]
    blocks.append(_Table(headers, rows))

    return blocks


def _technique_blocks(report: dict[str, Any]) -> list[_Block]:
    blocks, techniques = _v2_section(
        report, "techniques", "Techniques", "techniques", "No known technique matched."
    )
    if not techniques:
        return blocks

    rows: list[list[_Cell]] = []
    for technique in techniques:
        event_ids = _strings(technique.get("event_ids"))
        shown = ", ".join(event_ids[:_MAX_TECHNIQUE_EVENTS])
        if len(event_ids) > _MAX_TECHNIQUE_EVENTS:
            shown += " …"
        rows.append(
            [
                technique.get("tactic"),
                technique.get("name"),
                technique.get("mitre"),
                technique.get("events"),
                technique.get("failed"),
                technique.get("first_at"),
                shown or None,
            ]
        )
    headers = ["Tactic", "Technique", "MITRE", "Events", "Failed", "First", "Event IDs"]
    blocks.append(_Table(headers, rows))

    return blocks


def _derived_key_blocks(report: dict[str, Any]) -> list[_Block]:
    blocks, keys = _v2_section(
        report,
        "derived_keys",
        "Derived keys",
        "derived-keys",
        "The key obtained no other credentials.",
    )
    if not keys:
        return blocks

    # Type and depth stay in the JSON: the key prefix and the parent say them.
    rows: list[list[_Cell]] = [
        [
            _Stack(
                (derived.get("access_key_id"), _Label("from"), derived.get("parent"))
            ),
            _Stack((derived.get("obtained_by"), derived.get("obtained_at"))),
            derived.get("expires_at"),
            derived.get("role_arn") or derived.get("user_name"),
            derived.get("events"),
            _covered(derived.get("covered_by_containment")),
            _prose(derived.get("coverage_note")),
        ]
        for derived in keys
    ]
    headers = [
        "Key",
        "Obtained",
        "Expires",
        "Role / user",
        "Events",
        "Covered",
        "Note",
    ]
    blocks.append(_Table(headers, rows))

    return blocks


def _posture_blocks(report: dict[str, Any]) -> list[_Block]:
    posture = report.get("posture")
    blocks: list[_Block] = [_Heading(2, "Posture of the owner", "posture")]
    if not isinstance(posture, dict):
        blocks.append(_Line([_Label("Not available (IAM was not read).")]))
        return blocks

    for problem in _strings(posture.get("problems")):
        blocks.append(_Line([_Text(problem)], alert=True))
    rows: list[list[_Cell]] = [
        [_Label("IAM user"), posture.get("user_name")],
        [_Label("Key created"), posture.get("key_created_at")],
        [_Label("Key age (days)"), posture.get("key_age_days")],
        [_Label("MFA devices"), posture.get("mfa_devices")],
        [_Label("Attached policies"), _joined(posture.get("attached_policies"))],
        [_Label("Inline policies"), _joined(posture.get("inline_policies"))],
        [_Label("Groups"), _joined(posture.get("groups"))],
        [_Label("Quarantine policy"), posture.get("quarantine_policy")],
        [_Label("Quarantine leaves open"), _prose(posture.get("quarantine_note"))],
        [_Label("Reach"), _joined(posture.get("reach"))],
    ]
    blocks.append(_Table(["Field", "Value"], rows))
    others = posture.get("other_keys") or []
    if others:
        blocks.append(_Heading(3, "Other keys of the user"))
        blocks.append(
            _Table(
                ["Key", "Status", "Created"],
                [
                    [
                        other.get("access_key_id"),
                        other.get("status"),
                        other.get("created_at"),
                    ]
                    for other in others
                ],
            )
        )

    return blocks


def _least_privilege_blocks(report: dict[str, Any]) -> list[_Block]:
    least = report.get("least_privilege")
    blocks: list[_Block] = [
        _Heading(2, "Least-privilege suggestion", "least-privilege")
    ]
    if not isinstance(least, dict):
        blocks.append(_Line([_Label("Not available.")]))
        return blocks

    based_on = least.get("based_on") or {}
    blocks.append(
        _Line(
            [
                _Label("Actions the key used successfully from"),
                based_on.get("start"),
                _Label("to"),
                based_on.get("end"),
                _Label("over"),
                based_on.get("events"),
                _Label("events, before the exposure."),
            ]
        )
    )
    policy = json.dumps(least.get("policy"), indent=2, ensure_ascii=True)
    current: list[list[_Cell]] = [
        [name] for name in _strings(least.get("current_policies"))
    ]
    blocks.append(
        _Columns(
            [
                [_Heading(3, "Suggested policy"), _Code(policy)],
                [
                    _Heading(3, "Current policies"),
                    _Table(["Policy"], current or [[_Label("none recorded")]]),
                ],
            ]
        )
    )
    if isinstance(least.get("note"), str):
        blocks.append(_Line([_Text(least["note"])]))

    return blocks


def _timeline_blocks(report: dict[str, Any]) -> list[_Block]:
    events: list[dict[str, Any]] = report.get("events", [])
    exposed = report.get("access_key", {}).get("id")
    # Choosing a key shows the events of its chain: its own and its descendants'.
    keys: list[tuple[str, str]] = []
    if isinstance(exposed, str):
        keys.append((exposed, "exposed key"))
    for derived in report.get("derived_keys") or []:
        key_id = derived.get("access_key_id")
        if isinstance(key_id, str) and key_id not in (known for known, _ in keys):
            how = derived.get("obtained_by")
            how = how if isinstance(how, str) else "derived"
            count = derived.get("events")
            if isinstance(count, int):
                how += ", " + _events_label(count)
            keys.append((key_id, how))

    rows = [(_strings(_chain(event)), _timeline_row(event)) for event in events]
    headers = [
        "Time",
        "Key",
        "Action",
        "Region",
        "Result",
        "Source IP",
        "User agent",
        "Techniques",
        "Resources",
    ]

    return [_Heading(2, "Timeline", "timeline"), _Timeline(keys, headers, rows)]


def _events_label(count: int) -> str:
    return str(count) + (" event" if count == 1 else " events")


def _timeline_row(event: dict[str, Any]) -> list[_Cell]:
    resources = _resource_names(event)

    return [
        event.get("time"),
        event.get("access_key_id"),
        event.get("action"),
        event.get("region"),
        event.get("error_code") or _Label("ok"),
        event.get("source_ip"),
        event.get("user_agent"),
        _joined(event.get("techniques")),
        ", ".join(resources) if resources else None,
    ]


def _failed_blocks(report: dict[str, Any]) -> list[_Block]:
    failed = report.get("failed", {})
    events: list[dict[str, Any]] = report.get("events", [])
    blocks: list[_Block] = [
        _Heading(2, "Failed calls (attempts, not effects)", "failed")
    ]
    if not failed.get("total"):
        blocks.append(_Line([_Label("No failed calls.")]))
        return blocks

    blocks.append(_count_table("Error code", failed.get("by_error_code", [])))
    blocks.append(_count_table("Action", failed.get("by_action", [])))
    blocks.append(
        _Table(
            ["Time", "Key", "Action", "Region", "Error code", "Message", "Source IP"],
            [
                [
                    event.get("time"),
                    event.get("access_key_id"),
                    event.get("action"),
                    event.get("region"),
                    event.get("error_code"),
                    event.get("error_message"),
                    event.get("source_ip"),
                ]
                for event in events
                if event.get("error_code")
            ],
        )
    )

    return blocks


def _count_blocks(report: dict[str, Any]) -> list[_Block]:
    counts = report.get("counts", {})
    blocks: list[_Block] = [_Heading(2, "Successful calls", "counts")]
    for title, name in (
        ("Service", "by_service"),
        ("Action", "by_action"),
        ("Region", "by_region"),
        ("Source IP", "by_source_ip"),
        ("User agent", "by_user_agent"),
    ):
        blocks.append(_count_table(title, counts.get(name, [])))

    return blocks


def _responder_blocks(report: dict[str, Any]) -> list[_Block]:
    rows: list[list[_Cell]] = [
        [
            action.get("at"),
            _join(action.get("service"), action.get("operation")),
            action.get("target"),
            action.get("outcome"),
            action.get("request_id"),
        ]
        for action in report.get("responder_actions", [])
    ]

    return [
        _Heading(2, "What the responder did", "responder-actions"),
        _Table(["At", "Operation", "Target", "Outcome", "Request ID"], rows),
    ]


def _coverage_blocks(report: dict[str, Any]) -> list[_Block]:
    coverage = report.get("coverage", {})
    blocks: list[_Block] = [
        _Heading(2, "Coverage", "coverage"),
        _Table(["Field", "Value"], _coverage_rows(coverage)),
    ]
    for note in coverage.get("notes", []):
        blocks.append(_Line([_Label(note)]))

    return blocks


def _coverage_rows(coverage: dict[str, Any]) -> list[list[_Cell]]:
    problems = coverage.get("parse_problems_by_field", {})
    not_read = coverage.get("regions_not_read") or coverage.get(
        "regions_incomplete", {}
    )

    return [
        [_Label("Sources"), _joined(coverage.get("sources"))],
        [_Label("Regions read"), _joined(coverage.get("regions_read"))],
        [
            _Label("Regions not read"),
            ", ".join(name + ": " + str(why) for name, why in not_read.items())
            or _Label("none"),
        ],
        [_Label("Files read"), coverage.get("files_read")],
        [_Label("Files skipped (not log files)"), coverage.get("files_skipped")],
        [_Label("Files that failed"), len(coverage.get("files_failed", {}))],
        [_Label("Data events visible"), coverage.get("data_events_visible")],
        [_Label("Truncated"), coverage.get("truncated")],
        [_Label("Truncation note"), _prose(coverage.get("truncation_note"))],
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


# Value helpers.


def _chain(event: dict[str, Any]) -> object:
    chain = event.get("chain")
    if chain is None:
        return [event.get("access_key_id")]

    return chain


def _strings(value: object) -> list[str]:
    if not isinstance(value, list):
        return []

    return [item for item in value if isinstance(item, str)]


def _joined(value: object) -> str | None:
    items = _strings(value)

    return ", ".join(items) if items else None


def _resource_names(event: dict[str, Any]) -> list[str]:
    return [
        resource.get("name") or resource.get("type") or ""
        for resource in event.get("resources", [])
        if isinstance(resource, dict)
    ]


def _prose(value: object) -> _Cell:
    return _Text(value) if isinstance(value, str) else None


def _covered(value: object) -> _Cell:
    if value is True:
        return _Label("yes", "ok")
    if value is False:
        return _Label("NO", "bad")

    return _Label("unknown", "warn")


def _decision(value: object) -> _Cell:
    if value is True:
        return _Label("yes", "warn")
    if value is False:
        return _Label("no")

    return None


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
        elif category in ("Cc", "Cf", "Cs"):
            # Cs: a lone surrogate from a JSON escape cannot even be written out.
            out.append("\ufffd")
        else:
            out.append(char)

    return "".join(out)


# Markdown.


def _md_block(block: _Block) -> list[str]:
    if isinstance(block, _Heading):
        return ["#" * block.level + " " + block.text, ""]
    if isinstance(block, _Line):
        text = " ".join(_md_cell(cell, in_table=False) for cell in block.cells)
        return ["> **" + text + "**" if block.alert else text, ""]
    if isinstance(block, _Stats):
        parts = [
            "**" + _md_cell(value, in_table=False) + "** " + label
            for label, value in block.items
        ]
        return [" · ".join(parts), ""]
    if isinstance(block, _Code):
        return _md_fenced(block.text)
    if isinstance(block, _Columns):
        return [
            line
            for column in block.columns
            for part in column
            for line in _md_block(part)
        ]
    if isinstance(block, _Timeline):
        return _md_table(block.headers, [cells for _, cells in block.rows])

    return _md_table(block.headers, block.rows)


def _md_table(headers: Sequence[str], rows: Sequence[Sequence[_Cell]]) -> list[str]:
    out = ["| " + " | ".join(headers) + " |", "|" + " --- |" * len(headers)]
    for row in rows:
        cells = (_md_cell(cell, in_table=True) for cell in row)
        out.append("| " + " | ".join(cells) + " |")
    out.append("")

    return out


def _md_fenced(text: str) -> list[str]:
    """Return `text` as a fenced block whose fence is longer than any backtick run."""
    lines = [_neutralise(line) for line in text.split("\n")]
    longest = max((len(run) for run in _BACKTICKS.findall(text)), default=0)
    fence = "`" * max(3, longest + 1)

    return [fence, *lines, fence, ""]


def _md_cell(cell: _Cell, *, in_table: bool) -> str:
    if isinstance(cell, _Stack):
        return " ".join(_md_cell(part, in_table=in_table) for part in cell.parts)
    if cell is None:
        return "—"
    if isinstance(cell, bool):
        return "yes" if cell else "no"
    if isinstance(cell, int):
        return str(cell)
    if isinstance(cell, _Label):
        return cell.text
    if isinstance(cell, _Text):
        cell = cell.text
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


# HTML.


def _html_block(block: _Block) -> str:
    if isinstance(block, _Heading):
        level = str(block.level)
        anchor = ' id="' + block.anchor + '"' if block.anchor else ""
        return "<h" + level + anchor + ">" + _escape(block.text) + "</h" + level + ">"
    if isinstance(block, _Line):
        css = ' class="alert"' if block.alert else ""
        cells = " ".join(_html_cell(cell) for cell in block.cells)
        return "<p" + css + ">" + cells + "</p>"
    if isinstance(block, _Stats):
        cards = "".join(
            '<div class="stat'
            + (" flag" if _flagged(block, label, value) else "")
            + '"><b>'
            + _html_cell(value, code=False)
            + "</b><span>"
            + _escape(label)
            + "</span></div>"
            for label, value in block.items
        )
        return '<div class="stats">' + cards + "</div>"
    if isinstance(block, _Code):
        lines = "\n".join(_escape(line) for line in block.text.split("\n"))
        return "<pre><code>" + lines + "</code></pre>"
    if isinstance(block, _Columns):
        columns = "".join(
            "<div>" + "\n".join(_html_block(part) for part in column) + "</div>"
            for column in block.columns
        )
        return '<div class="columns">' + columns + "</div>"
    if isinstance(block, _Timeline):
        return _html_timeline(block)

    return _html_table(block.headers, [("", row) for row in block.rows])


def _flagged(block: _Stats, label: str, value: _Cell) -> bool:
    return label in block.alerts and isinstance(value, int) and value > 0


def _html_table(
    headers: Sequence[str],
    rows: Sequence[tuple[str, Sequence[_Cell]]],
    *,
    table_css: str = "",
) -> str:
    """Return a table; each row comes with its (renderer-made) class attribute.

    Columns of times, key IDs and short codes do not wrap; label/value tables
    get a narrow label column.
    """
    if list(headers) == ["Field", "Value"]:
        table_css = "kv"
    css = ' class="' + table_css + '"' if table_css else ""
    classes = [
        ' class="nw"'
        if header in _NOWRAP_COLUMNS
        else ' class="w ua"'
        if header == "User agent"
        else ' class="w"'
        if header in _WIDE_COLUMNS
        else ""
        for header in headers
    ]
    head = "".join("<th>" + _escape(text) + "</th>" for text in headers)
    body = "".join(
        "<tr"
        + (' class="' + row_css + '"' if row_css else "")
        + ">"
        + "".join(
            "<td" + td_css + ">" + _html_cell(cell) + "</td>"
            for td_css, cell in zip(classes, cells, strict=False)
        )
        + "</tr>\n"
        for row_css, cells in rows
    )

    return (
        "<table"
        + css
        + "><thead><tr>"
        + head
        + "</tr></thead><tbody>\n"
        + body
        + "</tbody></table>"
    )


def _html_timeline(block: _Timeline) -> str:
    """Return the timeline with one radio per key; CSS hides the other keys' rows.

    Element ids and classes are indexes into `block.keys`, never key text, so
    nothing from CloudTrail reaches an attribute or the style sheet.
    """
    index = {key: number for number, (key, _) in enumerate(block.keys)}
    rows = [
        (
            " ".join(
                "k" + str(index[key]) for key in dict.fromkeys(chain) if key in index
            ),
            cells,
        )
        for chain, cells in block.rows
    ]
    table = _html_table(block.headers, rows, table_css="timeline")
    if len(block.keys) < 2:
        return table

    radios = '<input type="radio" name="tl" id="tl-all" checked>' + "".join(
        '<input type="radio" name="tl" id="tl-' + str(number) + '">'
        for number in range(len(block.keys))
    )
    labels = '<label for="tl-all">all keys</label>' + "".join(
        '<label for="tl-'
        + str(number)
        + '"><code>'
        + _escape(key)
        + "</code> "
        + _escape(how)
        + "</label>"
        for number, (key, how) in enumerate(block.keys)
    )

    return (
        '<div class="filter">'
        + radios
        + '<div class="keys">'
        + labels
        + "</div>"
        + table
        + "</div>"
    )


def _html_cell(cell: _Cell, *, code: bool = True) -> str:
    if isinstance(cell, _Stack):
        return "<br>".join(_html_cell(part, code=code) for part in cell.parts)
    if cell is None:
        return "—"
    if isinstance(cell, bool):
        return "yes" if cell else "no"
    if isinstance(cell, int):
        return str(cell)
    if isinstance(cell, _Label):
        if cell.tone:
            return (
                '<span class="tone-' + cell.tone + '">' + _escape(cell.text) + "</span>"
            )
        return _escape(cell.text)
    if isinstance(cell, _Text):
        return _escape(cell.text)
    if not code:
        return _escape(cell)

    return "<code>" + _escape(cell) + "</code>"


def _escape(text: str) -> str:
    return html.escape(_neutralise(text), quote=True)


# CSV.


def _csv_cell(value: object) -> str:
    """Return `value` as CSV text, defusing spreadsheet formula prefixes."""
    if value is None:
        return ""
    # A lone surrogate (from a JSON escape in a trail file) cannot be written.
    text = str(value).encode("utf-8", "replace").decode("utf-8")
    if text.startswith(_FORMULA_PREFIXES) or text.lstrip().startswith(
        _FORMULA_PREFIXES[:4]
    ):
        return "'" + text

    return text
