"""Blast-radius reports: what a leaked key did in CloudTrail, and how to show it.

Three layers, each tested on its own: `sources` reads records (LookupEvents,
trail files) and states coverage, `build` shapes them into a JSON-ready report,
`render` turns a report into JSON, Markdown, HTML or a CSV timeline. `service`
ties them together for the playbook and the command line. The report's JSON
Schema is `docs/report.schema.json`.
"""

from __future__ import annotations

from responder.reports.build import (
    REPORT_SCHEMA_VERSION,
    build_report,
    key_type_of,
    normalise_event,
)
from responder.reports.render import (
    render_csv,
    render_html,
    render_json,
    render_markdown,
    write_json,
)
from responder.reports.service import collect_events, merge_records, offline_report
from responder.reports.sources import (
    LOOKUP_EVENTS_INTERVAL,
    LOOKUP_EVENTS_SOURCE,
    Coverage,
    RegionPacer,
    Window,
    enabled_regions,
    read_lookup_events,
    read_trail_files,
    record_from_lookup_item,
    s3_caller,
    scrub_secrets,
    select_records,
)

__all__ = [
    "LOOKUP_EVENTS_INTERVAL",
    "LOOKUP_EVENTS_SOURCE",
    "REPORT_SCHEMA_VERSION",
    "Coverage",
    "RegionPacer",
    "Window",
    "build_report",
    "collect_events",
    "enabled_regions",
    "key_type_of",
    "merge_records",
    "normalise_event",
    "offline_report",
    "read_lookup_events",
    "read_trail_files",
    "record_from_lookup_item",
    "render_csv",
    "render_html",
    "render_json",
    "render_markdown",
    "s3_caller",
    "scrub_secrets",
    "select_records",
    "write_json",
]
