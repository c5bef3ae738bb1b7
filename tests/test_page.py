"""The web page in a real headless Chromium, against real `reportsvc serve` and
`reportsvc worker` processes and the stand-in model (over HTTP, in this process).

Sections appear one by one because the worker runs one model call at a time and the
stand-in model takes seconds per section. Waits are generous (the machine may be busy);
nothing here asserts how long something took.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from playwright.async_api import (
    Browser,
    ConsoleMessage,
    Error,
    Locator,
    Page,
    Response,
    expect,
)

from reportsvc.llm.fake import FakeConfig, FakeLLMThread, Faults
from tests.browser import chromium
from tests.conftest import has_failed
from tests.processes import Cluster, cluster

pytestmark = pytest.mark.slow

WAIT_MS = 60_000
expect.set_options(timeout=WAIT_MS)

# Records, on every change of the job's view, its status and how many sections are shown
# finished; kept in Python, so it survives reloads.
OBSERVER = """
window.addEventListener("DOMContentLoaded", () => {
  const view = document.getElementById("job-view");
  const report = () => window.reportsvcObserved(
    view.dataset.status || "",
    view.querySelectorAll('#job-sections > li[data-state="done"]').length,
  );
  new MutationObserver(report).observe(
    view, { subtree: true, childList: true, attributes: true, characterData: true });
});
"""


class Problems:
    """What must never happen on the page: an uncaught error, or anything the
    Content-Security-Policy or Trusted Types refused."""

    WORDS = ("Content Security Policy", "Trusted Type", "TrustedHTML", "Refused to")

    def __init__(self) -> None:
        self.seen: list[str] = []

    def console(self, message: ConsoleMessage) -> None:
        if message.type == "error" and any(word in message.text for word in self.WORDS):
            self.seen.append(message.text)

    def page_error(self, error: Error) -> None:
        self.seen.append(f"uncaught: {error}")


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as launched:
        yield launched


@pytest.fixture
async def page(
    browser: Browser, request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Page]:
    """A fresh browser context (no storage, no cookies) at desktop size. On failure, a
    screenshot of the page is saved and its path printed."""
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    page.set_default_timeout(WAIT_MS)
    problems = Problems()
    page.on("console", problems.console)
    page.on("pageerror", problems.page_error)
    try:
        yield page
    finally:
        if has_failed(request.node):
            shot = tmp_path / "failure.png"
            try:
                await page.screenshot(path=shot, full_page=True)
                print(f"screenshot of the page at the failure: {shot}")
            except Error as exc:
                print(f"no screenshot ({exc})")
            print(f"API and worker logs: {tmp_path}")
        await context.close()
    assert problems.seen == []


@contextmanager
def service(
    database_url: str, fake_llm: FakeLLMThread, log_dir: Path, workers: int = 1, **env: str
) -> Iterator[Cluster]:
    """The API and `workers` workers, each making one model call at a time."""
    with cluster(database_url, fake_llm.base_url, log_dir, **env) as running:
        running.start_api()
        for number in range(workers):
            running.start_worker(f"worker-{number}", concurrency=1)
        yield running


async def open_page(page: Page, url: str) -> None:
    """Go to `url` and wait until the page has started (its form shown): keys pressed
    before that would reach no field."""
    await page.goto(url)
    await expect(page.locator("#app")).to_be_visible()


def job_in_url(page: Page) -> str:
    return parse_qs(urlsplit(page.url).query)["job"][0]


async def tab_to(page: Page, element_id: str) -> None:
    """Move the focus with Tab only, as a keyboard user would, to `element_id`."""
    for _ in range(30):
        await page.keyboard.press("Tab")
        if await page.evaluate("document.activeElement?.id") == element_id:
            return
    raise AssertionError(f"#{element_id} cannot be reached with Tab")


async def submit(page: Page, topic: str) -> str:
    field = page.get_by_label("Topic", exact=True)
    await field.fill(topic)
    await field.press("Enter")
    await expect(page).to_have_url(re.compile(r"\?job=[0-9a-f-]{36}$"))
    return job_in_url(page)


def view(page: Page) -> tuple[Locator, Locator, Locator]:
    """The job's view, its section items, and the finished ones among them."""
    sections = page.locator("#job-sections > li")
    return page.locator("#job-view"), sections, sections.and_(page.locator('[data-state="done"]'))


async def download_and_copy(page: Page, api_url: str, job_id: str, file_name: str) -> None:
    """The report's Download and Copy buttons, from the keyboard, give its Markdown."""
    async with httpx.AsyncClient(base_url=api_url) as http:
        response = await http.get(f"/reports/{job_id}", params={"format": "markdown"})
    markdown = response.text
    assert markdown.startswith("# ")
    async with page.expect_download() as downloading:
        await page.get_by_role("button", name="Download Markdown").press("Enter")
    download = await downloading.value
    assert download.suggested_filename == file_name
    assert Path(await download.path()).read_text() == markdown
    await page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    await page.get_by_role("button", name="Copy Markdown").press("Enter")
    await expect(page.locator("#action-status")).to_have_text("Copied the report as Markdown.")
    assert await page.evaluate("navigator.clipboard.readText()") == markdown


async def test_a_report_writes_itself_section_by_section_and_survives_a_reload(
    page: Page, database_url: str, fake_llm: FakeLLMThread, tmp_path: Path
) -> None:
    fake_llm.configure(FakeConfig(section=Faults(latency=2.0)))
    observed: list[tuple[str, int]] = []
    await page.expose_function("reportsvcObserved", lambda s, n: observed.append((s, n)))
    await page.add_init_script(OBSERVER)
    streams: list[Response] = []
    page.on("response", lambda r: streams.append(r) if r.url.endswith("/events") else None)
    with service(database_url, fake_llm, tmp_path) as running:
        await open_page(page, f"{running.api_url}/")
        # Keyboard only: Tab to the topic, type it, Tab to the sections, Enter.
        await expect(page.get_by_label("Model")).to_be_hidden()  # one model: no choice
        await tab_to(page, "topic")
        await page.keyboard.type("The Roman Empire")
        await tab_to(page, "sections")
        await page.keyboard.type("4")
        await page.keyboard.press("Enter")
        await expect(page).to_have_url(re.compile(r"\?job=[0-9a-f-]{36}$"))
        job_id = job_in_url(page)
        heading = page.locator("#job-topic")
        await expect(heading).to_have_text("The Roman Empire")
        await expect(heading).to_be_focused()
        job, sections, done = view(page)
        await expect(sections).to_have_count(4)  # the outline, before any section
        await expect(done).to_have_count(2)
        titles = await sections.locator("h3").all_inner_texts()
        first = done.first
        first_title = await first.locator("h3").inner_text()
        first_text = await first.locator(".section-body").inner_text()

        # Mid-way, a reload shows the same job: same outline, same finished sections.
        await page.reload()
        await expect(heading).to_have_text("The Roman Empire")
        await expect(sections).to_have_count(4)
        assert await sections.locator("h3").all_inner_texts() == titles
        again = done.filter(has=page.get_by_role("heading", name=first_title, exact=True))
        await expect(again.locator(".section-body")).to_have_text(first_text)

        await expect(job).to_have_attribute("data-status", "completed")
        await expect(done).to_have_count(4)
        await expect(page.locator("#job-status")).to_have_text("Completed: 4 sections")
        await expect(page.locator("#job-progress")).to_have_attribute("value", "100")

        # Each section appeared on its own while the job was still processing.
        while_processing = {count for status, count in observed if status == "processing"}
        assert {1, 2, 3} <= while_processing, observed
        assert max(while_processing) < 4
        # Live updates came from the event stream, as text/event-stream.
        assert streams
        assert {r.status for r in streams} == {200}
        assert all(r.headers["content-type"].startswith("text/event-stream") for r in streams)

        # Rendered from Markdown: paragraphs, not raw text.
        assert await first.locator(".section-body p").count() >= 2
        await expect(page.locator("#job-facts")).to_contain_text("Tokens")
        recent = page.locator("#recent-list > li", has_text="The Roman Empire")
        await expect(recent).to_contain_text("completed")
        await expect(recent.locator("a")).to_have_attribute("aria-current", "page")

        await download_and_copy(page, running.api_url, job_id, "the-roman-empire.md")


async def test_the_page_carries_on_when_the_api_process_is_killed_and_restarted(
    page: Page, database_url: str, fake_llm: FakeLLMThread, tmp_path: Path
) -> None:
    fake_llm.configure(FakeConfig(section=Faults(latency=1.5)))
    with service(database_url, fake_llm, tmp_path) as running:
        await open_page(page, f"{running.api_url}/")
        await submit(page, "Lighthouses")
        job, _, done = view(page)
        await expect(done).to_have_count(1)
        api = running.services[0]
        api.signal(signal.SIGKILL)
        api.wait(timeout=10)
        notice = page.locator("#action-status")
        await expect(notice).to_have_text("Live updates were interrupted; reconnecting…")
        # A new API process on the same address; the worker carried on meanwhile.
        running._start("api-restarted", ["serve", "--port", str(urlsplit(running.api_url).port)])
        await expect(job).to_have_attribute("data-status", "completed")
        await expect(done).to_have_count(6)
        await expect(notice).to_have_text("")


async def test_a_report_can_be_cancelled_and_started_again(
    page: Page, database_url: str, fake_llm: FakeLLMThread, tmp_path: Path
) -> None:
    fake_llm.configure(FakeConfig(section=Faults(latency=3.0)))
    with service(database_url, fake_llm, tmp_path) as running:
        await open_page(page, f"{running.api_url}/")
        job_id = await submit(page, "Slow rivers")
        job, sections, _ = view(page)
        await expect(sections).to_have_count(6)
        cancel = page.get_by_role("button", name="Cancel report")
        await cancel.press("Enter")
        await expect(job).to_have_attribute("data-status", "cancelled")
        await expect(page.locator("#job-status")).to_have_text("Cancelled")
        await expect(page.locator("#job-error")).to_contain_text("was cancelled")
        await expect(cancel).to_be_hidden()
        await expect(sections.filter(has_text="Not written.")).not_to_have_count(0)
        async with httpx.AsyncClient(base_url=running.api_url) as http:
            assert (await http.get(f"/reports/{job_id}")).json()["status"] == "cancelled"

            await page.get_by_role("button", name="Try again").press("Enter")
            await expect(page).not_to_have_url(re.compile(job_id))
            again = job_in_url(page)
            await expect(page.locator("#job-topic")).to_have_text("Slow rivers")
            await expect(job).to_have_attribute("data-status", "processing")
            restarted = (await http.get(f"/reports/{again}")).json()
        assert restarted["status"] == "processing"
        assert restarted["options"]["sections"] == 6
        # Both are in the list, the new one first.
        items = page.locator("#recent-list > li")
        await expect(items).to_have_count(2)
        await expect(items.first).to_have_attribute("data-job-id", again)
        await expect(items.nth(1)).to_contain_text("cancelled")


async def test_a_failed_report_says_why_and_can_be_tried_again(
    page: Page, database_url: str, fake_llm: FakeLLMThread, tmp_path: Path
) -> None:
    # The model refuses the key: a permanent error, so the job fails at its first section.
    fake_llm.configure(FakeConfig(section=Faults(error_rate=1.0, error_status=401)))
    with service(database_url, fake_llm, tmp_path) as running:
        await open_page(page, f"{running.api_url}/")
        failed_id = await submit(page, "Glaciers")
        job, sections, _ = view(page)
        await expect(job).to_have_attribute("data-status", "failed")
        await expect(page.locator("#job-status")).to_have_text("Failed")
        async with httpx.AsyncClient(base_url=running.api_url) as http:
            error = (await http.get(f"/reports/{failed_id}")).json()["error"]
        error_box = page.locator("#job-error")
        await expect(error_box).to_be_visible()
        await expect(error_box).to_contain_text(f"This report failed: {error}")

        fake_llm.configure(FakeConfig())
        await page.get_by_role("button", name="Try again").press("Enter")
        await expect(page).not_to_have_url(re.compile(failed_id))
        await expect(job).to_have_attribute("data-status", "completed")
        await expect(error_box).to_be_hidden()
        await expect(sections).to_have_count(6)


async def test_a_report_shorter_than_asked_for_says_so(
    page: Page, database_url: str, fake_llm: FakeLLMThread, tmp_path: Path
) -> None:
    # Every outline has 3 titles; after its last attempt the job goes on with them.
    fake_llm.configure(FakeConfig(outline_items=3))
    with service(database_url, fake_llm, tmp_path) as running:
        await open_page(page, f"{running.api_url}/")
        await submit(page, "Deserts")
        job, sections, done = view(page)
        await expect(job).to_have_attribute("data-status", "completed")
        await expect(done).to_have_count(3)
        await expect(sections).to_have_count(3)
        await expect(page.locator("#job-shortfall")).to_have_text(
            "The model proposed 3 usable sections of the 6 asked for; the report has 3."
        )


XSS_PARAGRAPHS = (
    "<script>window.pwned = 'script'</script>",
    "<img src=x onerror=\"window.pwned = 'img'; alert(1)\">",
    "[a link](javascript:window.pwned='link')",
    "**Bold** is *Markdown*.",
)
XSS_SECTION = "\n\n".join(XSS_PARAGRAPHS)
XSS_TOPIC = "Markup <img src=x onerror=\"window.pwned = 'topic'\"> & <b>tags</b>"


async def test_html_from_the_model_or_the_topic_shows_as_text_and_runs_nothing(
    page: Page, database_url: str, fake_llm: FakeLLMThread, tmp_path: Path
) -> None:
    fake_llm.configure(FakeConfig(section_markup=XSS_SECTION))
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: dialogs.append(dialog.message))
    with service(database_url, fake_llm, tmp_path) as running:
        await open_page(page, f"{running.api_url}/")
        await submit(page, XSS_TOPIC)
        job, sections, done = view(page)
        await expect(job).to_have_attribute("data-status", "completed")
        for attempt in ("live", "reloaded"):  # rendered from partial sections, then the report
            await expect(page.locator("#job-topic")).to_have_text(XSS_TOPIC)
            await expect(done).to_have_count(6)
            body = done.first.locator(".section-body")
            await expect(body).to_contain_text("<script>window.pwned = 'script'</script>")
            await expect(body).to_contain_text(
                "<img src=x onerror=\"window.pwned = 'img'; alert(1)\">"
            )
            await expect(body).to_contain_text("[a link](javascript:window.pwned='link')")
            await expect(body.locator("strong")).to_have_text("Bold")  # Markdown still works
            await expect(sections.first.locator("h3")).to_contain_text("<img src=x onerror=")
            await expect(page.locator("#recent-list")).to_contain_text(XSS_TOPIC)
            # No element came from the text: no image, no inline script, no bold tag from
            # the topic, no javascript: link.
            unexpected = (
                "img, script:not([src]), #job-view b, #recent-list b, a[href^='javascript']"
            )
            assert await page.locator(unexpected).count() == 0, attempt
            assert await page.evaluate("window.pwned") is None, attempt
            if attempt == "live":
                await page.reload()
        assert dialogs == []


async def test_validation_errors_are_shown_next_to_their_field(
    page: Page, database_url: str, fake_llm: FakeLLMThread, tmp_path: Path
) -> None:
    models = {"OPENAI_MODEL": "small-model", "OPENAI_ALLOWED_MODELS": "large-model"}
    with service(database_url, fake_llm, tmp_path, workers=0, **models) as running:
        await open_page(page, f"{running.api_url}/")
        topic = page.get_by_label("Topic", exact=True)
        sections = page.get_by_label("Sections")
        language = page.get_by_label("Language")
        await topic.press("Enter")
        await expect(topic).to_have_attribute("aria-invalid", "true")
        await expect(topic).to_have_accessible_error_message("Topic must not be empty or blank.")
        await expect(topic).to_have_accessible_description(re.compile("must not be empty"))
        await expect(topic).to_be_focused()

        await topic.fill("x" * 301)
        await topic.press("Enter")
        await expect(topic).to_have_accessible_error_message(
            "Topic is 301 characters long; the limit is 300 (MAX_TOPIC_LENGTH)."
        )

        await topic.fill("Tides")
        for value, message in [
            ("13", "Sections is 13; the limit is 12 (MAX_SECTIONS)."),
            ("25", "Sections must be from 1 to 12."),
            ("0", "Sections must be from 1 to 12."),
            ("2.5", "Sections must be a whole number."),
        ]:
            await sections.fill(value)
            await sections.press("Enter")
            await expect(sections).to_have_accessible_error_message(message)
            await expect(sections).to_be_focused()
            await expect(topic).not_to_have_attribute("aria-invalid", "true")
        await sections.fill("")
        await language.fill("x" * 41)
        await language.press("Enter")
        await expect(language).to_have_accessible_error_message(
            "Language must be at most 40 characters long."
        )
        await language.fill("Klingon 2")
        await language.press("Enter")
        await expect(language).to_have_accessible_error_message(
            "Language must be a language's name: letters, with spaces or hyphens."
        )
        await expect(sections).not_to_have_attribute("aria-invalid", "true")

        await language.fill("French")
        # A choice of models is offered because OPENAI_ALLOWED_MODELS has one more.
        model = page.get_by_label("Model")
        await expect(model).to_have_value("small-model")
        await expect(model.locator("option")).to_have_text(["small-model", "large-model"])
        await model.select_option("large-model")
        await page.get_by_label("Detail").select_option("brief")
        await language.press("Enter")
        await expect(page).to_have_url(re.compile(r"\?job="))
        await expect(page.locator(".field-error:visible")).to_have_count(0)
        async with httpx.AsyncClient(base_url=running.api_url) as http:
            created = (await http.get(f"/reports/{job_in_url(page)}")).json()
        assert created["model"] == "large-model"
        assert created["options"] == {
            "sections": 6, "detail": "brief", "summary": False, "language": "French"
        }  # fmt: skip


async def test_the_page_asks_for_a_token_keeps_it_and_shows_only_its_jobs(
    page: Page, database_url: str, fake_llm: FakeLLMThread, tmp_path: Path
) -> None:
    fake_llm.configure(FakeConfig(section=Faults(latency=0.2)))
    streams: list[Response] = []
    page.on("response", lambda r: streams.append(r) if r.url.endswith("/events") else None)
    tokens = "alpha-page-token,beta-page-token"
    with service(database_url, fake_llm, tmp_path, API_TOKENS=tokens) as running:
        await page.goto(f"{running.api_url}/")
        token = page.get_by_label("API token", exact=True)
        topic = page.get_by_label("Topic", exact=True)
        await expect(token).to_be_focused()
        await expect(topic).to_be_hidden()

        await token.fill("not-a-token")
        await token.press("Enter")
        await expect(token).to_have_accessible_error_message(
            "That token was refused: the API token is not valid (unknown or revoked)."
        )
        await token.fill("alpha-page-token")
        await token.press("Enter")
        await expect(topic).to_be_focused()
        await expect(page.locator("#session")).to_contain_text("Using your saved API token")

        alpha_job = await submit(page, "Alpha plans")
        job, _, done = view(page)
        await expect(job).to_have_attribute("data-status", "completed")
        await expect(done).to_have_count(6)
        # The live stream carried the token.
        assert streams
        assert {r.status for r in streams} == {200}
        for response in streams:
            headers = await response.request.all_headers()
            assert headers["authorization"] == "Bearer alpha-page-token"

        # Kept in the browser: a reload asks for nothing.
        await page.reload()
        await expect(page.locator("#recent-list")).to_contain_text("Alpha plans")
        await expect(token).to_be_hidden()
        stored = "localStorage.getItem('reportsvc.apiToken')"
        assert await page.evaluate(stored) == "alpha-page-token"

        # Another token sees none of alpha's jobs, not even by their URL.
        await page.get_by_role("button", name="Forget token").press("Enter")
        await expect(token).to_be_focused()
        assert await page.evaluate(stored) is None
        await token.fill("beta-page-token")
        await token.press("Enter")
        await expect(page.locator("#recent-empty")).to_be_visible()
        await expect(page.locator("#recent-list > li")).to_have_count(0)
        await page.goto(f"{running.api_url}/?job={alpha_job}")
        await expect(page.locator("#job-topic")).to_have_text("Report not found")
        await expect(page.locator("#job-view")).not_to_contain_text("Alpha plans")
        await expect(page.locator("#recent-empty")).to_be_visible()
        await submit(page, "Beta plans")
        items = page.locator("#recent-list > li")
        await expect(items).to_have_count(1)
        await expect(items).to_contain_text("Beta plans")

        # A saved token the API no longer accepts: the page asks again, and says why.
        await page.evaluate("localStorage.setItem('reportsvc.apiToken', 'revoked-token')")
        await page.reload()
        await expect(token).to_have_accessible_error_message(re.compile("saved token was refused"))
        assert await page.evaluate(stored) is None


async def test_recent_jobs_are_paged_newest_first_and_follow_progress_live(
    page: Page, database_url: str, fake_llm: FakeLLMThread, tmp_path: Path
) -> None:
    with service(database_url, fake_llm, tmp_path, workers=0) as running:
        async with httpx.AsyncClient(base_url=running.api_url) as http:
            for number in range(12):
                created = await http.post("/reports", json={"topic": f"Topic {number:02d}"})
                assert created.status_code == 202
        await open_page(page, f"{running.api_url}/")
        items = page.locator("#recent-list > li")
        await expect(items).to_have_count(10)
        await expect(items.first.locator("a")).to_have_text("Topic 11")
        await expect(items.first).to_contain_text("processing, 0%")
        more = page.get_by_role("button", name="Show older reports")
        await more.press("Enter")
        await expect(items).to_have_count(12)
        await expect(items.last.locator("a")).to_have_text("Topic 00")
        await expect(more).to_be_hidden()
        await expect(items.nth(10).locator("a")).to_be_focused()  # the first of the new page

        running.start_worker("late-worker", concurrency=8)  # no reload from here on
        await expect(items.filter(has_text="completed")).to_have_count(12)
        await expect(page.locator("#recent-list progress:visible")).to_have_count(0)

        await items.nth(3).locator("a").press("Enter")
        await expect(page.locator("#job-topic")).to_have_text("Topic 08")
        await expect(page.locator("#job-status")).to_have_text("Completed: 6 sections")
        await expect(items.nth(3).locator("a")).to_have_attribute("aria-current", "page")


def _luminance(rgb: str) -> float:
    red, green, blue = (int(part) for part in re.findall(r"\d+", rgb)[:3])
    return (0.2126 * red + 0.7152 * green + 0.0722 * blue) / 255


UNLABELLED = """
[...document.querySelectorAll("input, select, button, progress, a[href]")]
  .filter((el) => el.checkVisibility())
  .filter((el) => !(el.labels?.length || el.getAttribute("aria-label") || el.textContent.trim()))
  .map((el) => el.outerHTML)
"""


WRITE_HTML = """() => {
  try {
    document.createElement("div").innerHTML = "<b>bold</b>";
    return "written";
  } catch (error) {
    return error.name;
  }
}"""


async def test_the_page_reads_well_on_a_phone_and_a_desktop_in_light_and_dark(
    browser: Browser, page: Page, database_url: str, fake_llm: FakeLLMThread, tmp_path: Path
) -> None:
    """Also makes the README's screenshots: REPORTSVC_SCREENSHOTS=docs copies them there."""
    fake_llm.configure(FakeConfig(section=Faults(latency=0.2)))
    shots = tmp_path / "screenshots"
    shots.mkdir()
    with service(database_url, fake_llm, tmp_path, SUMMARY_PASS="true") as running:
        await open_page(page, f"{running.api_url}/")
        await submit(page, "The history of the printing press")
        job, _, _ = view(page)
        await expect(job).to_have_attribute("data-status", "completed")
        await expect(page.locator("#job-summary")).to_be_visible()
        finished_url = page.url
        assert await page.evaluate(UNLABELLED) == []
        await tab_to(page, "copy-job")
        outline = await page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
        assert outline == "solid"  # the focus is visible

        # A report being written, on a desktop in light mode.
        fake_llm.configure(FakeConfig(section=Faults(latency=3.0)))
        await submit(page, "Coral reefs")
        await expect(page.locator('#job-sections > li[data-state="done"]')).to_have_count(2)
        await page.locator("#job-topic").blur()
        await page.screenshot(path=shots / "page-writing.png", full_page=True)
        assert (
            _luminance(await page.evaluate("getComputedStyle(document.body).backgroundColor")) > 0.8
        )

        for name, options in [
            ("page-dark", {"viewport": {"width": 1280, "height": 900}, "color_scheme": "dark"}),
            ("page-phone", {"viewport": {"width": 375, "height": 812}, "color_scheme": "light"}),
        ]:
            context = await browser.new_context(**options)  # type: ignore[arg-type]
            try:
                other = await context.new_page()
                await other.goto(finished_url)
                await expect(other.locator("#job-view")).to_have_attribute(
                    "data-status", "completed"
                )
                await expect(other.locator("#job-summary")).to_be_visible()
                # Nothing wider than the screen: no sideways scrolling.
                width = await other.evaluate("document.documentElement.scrollWidth")
                assert width <= options["viewport"]["width"], (name, width)  # type: ignore[index]
                background = await other.evaluate("getComputedStyle(document.body).backgroundColor")
                dark = _luminance(background) < 0.2
                assert dark == (options["color_scheme"] == "dark"), (name, background)
                assert await other.evaluate(UNLABELLED) == []
                # Trusted Types are enforced: a string written to innerHTML is refused.
                assert await other.evaluate(WRITE_HTML) == "TypeError"
                await other.evaluate("document.getElementById('job-view').scrollIntoView()")
                await other.screenshot(path=shots / f"{name}.png")
            finally:
                await context.close()

    made = sorted(path.name for path in shots.iterdir())
    assert made == ["page-dark.png", "page-phone.png", "page-writing.png"]
    assert all((shots / name).read_bytes().startswith(b"\x89PNG") for name in made)
    if target := os.environ.get("REPORTSVC_SCREENSHOTS"):
        for name in made:
            shutil.copy(shots / name, Path(target) / name)
