"""Headless Chromium for the report tests: dump a page's DOM or take a screenshot.

Chromium only ever loads `file://` pages the caller wrote, with background
networking, component updates, sync and QUIC off, and every host name mapped
to nothing, so it talks to no address at all. Debian's package is expected at
`/usr/bin/chromium`; `make test` installs it.

Run `python tests/reports/browser.py` to remake `docs/report-screenshot.png`
from the report of the busiest key in the Invictus capture.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

__all__ = ["CHROMIUM", "INSTALL_HINT", "dump_dom", "screenshot"]

CHROMIUM = Path("/usr/bin/chromium")
INSTALL_HINT = (
    "Debian's chromium is not installed at /usr/bin/chromium: run "
    "`apt-get update && apt-get install -y chromium` as root "
    "(`make test` does it)"
)
# The brief's flags, plus a resolver rule that makes every host name fail.
_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--hide-scrollbars",
)
_TIMEOUT = 120
_REPO = Path(__file__).resolve().parents[2]
_BUSIEST_KEY = "AKIATFQR7NSC8Q4X20BJ"


def dump_dom(page: Path, profile: Path) -> str:
    """Return the DOM Chromium built from the local file `page`, serialised."""
    result = _run(page, profile, "--dump-dom")

    return result.stdout


def screenshot(
    page: Path, png: Path, profile: Path, *, size: str = "1280,2000"
) -> None:
    """Write a PNG of the local file `page` as Chromium draws it at `size`."""
    _run(page, profile, "--screenshot=" + str(png), "--window-size=" + size)


def _run(page: Path, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    if not CHROMIUM.exists():
        raise FileNotFoundError(INSTALL_HINT)
    url = page.resolve().as_uri()
    if not url.startswith("file://"):
        msg = "only local files are loaded"
        raise ValueError(msg)

    command = [str(CHROMIUM), *_FLAGS, "--user-data-dir=" + str(profile), *args, url]

    return subprocess.run(  # noqa: S603 - fixed binary, our own file URL
        command,
        capture_output=True,
        text=True,
        timeout=_TIMEOUT,
        check=True,
        cwd=profile,
    )


def _main() -> int:
    import tempfile

    sys.path.insert(0, str(_REPO))
    from responder.reports import offline_report, render_html

    corpus = (
        _REPO.parent
        / "shared"
        / "corpus"
        / "cloudtrail"
        / "invictus-ir_aws_dataset_stratus-2023-07-10"
    )
    report = offline_report(access_key_id=_BUSIEST_KEY, path=str(corpus))
    out = _REPO / "docs" / "report-screenshot.png"
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "report.html"
        page.write_text(render_html(report), encoding="utf-8")
        profile = Path(tmp) / "profile"
        profile.mkdir()
        screenshot(page, out, profile)
    print("wrote", out)

    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
