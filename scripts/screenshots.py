"""Regenerate the viewer's screenshots under docs/ (the README shows them).

Run by hand from the repository root after a change to the viewer:
``.venv/bin/python scripts/screenshots.py``. Tests never write to docs/: this script is
the only thing that rewrites these tracked files. It records a store in a temporary
directory, serves it on 127.0.0.1 and drives Debian's Chromium with Playwright.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from playwright.sync_api import Page, expect, sync_playwright  # noqa: E402
from tests.ui.conftest import (  # noqa: E402
    CHAT_SESSION,
    CHROMIUM,
    CHROMIUM_ARGS,
    fill_store,
    import_known_runs,
    record_chat_session,
)

from tracemux import TracingService  # noqa: E402
from tracemux.destinations import SQLiteStore  # noqa: E402
from tracemux.ui import UIServer  # noqa: E402

DOCS = ROOT / "docs"


def shoot(page: Page, name: str, selector: str) -> None:
    """Screenshot the page down to the bottom of ``selector`` into docs/<name>.png."""
    page.evaluate("document.fonts.ready")
    page.wait_for_timeout(300)
    bottom = page.evaluate(f"document.querySelector({selector!r}).getBoundingClientRect().bottom")
    path = DOCS / f"{name}.png"
    page.screenshot(path=str(path), clip={"x": 0, "y": 0, "width": 1440, "height": bottom + 20})
    print(f"wrote {path.relative_to(ROOT)}")


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(Path(tmp) / "traces.db")
        import_known_runs(store, time.time_ns())  # a day of runs for the dashboard
        svc = TracingService([store])
        try:
            rec = fill_store(svc, agent_runs=6, pace=1.0)
            chat = record_chat_session(svc)
            assert svc.flush(10)
        finally:
            svc.shutdown(10)
        with UIServer(store, port=0) as server, sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1440, "height": 900}, locale="en-US")
            page.goto(server.url + "?limit=14")
            expect(page.locator("tr.run-row")).to_have_count(14)
            shoot(page, "ui-list", ".list-view")
            run_id = rec.agent_runs[0]
            failing = next(s.span_id for s in store.spans(run_id) if s.status == "error")
            page.goto(f"{server.url}runs/{run_id}?span={failing}")
            expect(page.locator("#d-error")).to_be_visible()
            shoot(page, "ui-run", ".run-body")
            answer = next(s.span_id for s in store.spans(chat[1]) if s.name == "Answer LLM")
            page.goto(f"{server.url}runs/{chat[1]}?span={answer}")
            expect(page.locator("#chat")).to_be_visible()
            shoot(page, "ui-chat", ".run-body")
            page.goto(server.url + "sessions")
            expect(page.locator("tr.session-row").first).to_be_visible()
            shoot(page, "ui-sessions", ".list-view")
            page.goto(f"{server.url}sessions/{CHAT_SESSION}")
            expect(page.locator("article.turn")).to_have_count(2)
            shoot(page, "ui-session", ".session-view")
            page.goto(server.url + "dashboard?range=24h")
            expect(page.locator("#chart-runs")).to_be_visible()
            shoot(page, "ui-dashboard", ".dash-view")
            browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
