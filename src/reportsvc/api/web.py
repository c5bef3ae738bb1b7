"""The web page: submit a topic, watch the report write itself, read it.

The API process serves it: `/` is one HTML document, `/assets/...` its scripts, styles and
vendored libraries, all shipped in the package (`reportsvc/web/`) and read once at
start-up, so the page works offline and needs no build step. They hold no data, so they
are public; every job the page shows comes from the /reports endpoints with the browser's
own token. The page's two JSON helpers under `/ui` sit behind the same guard as /reports.

Page and asset answers carry a Content-Security-Policy: scripts, styles and connections
from this origin only, no inline script, no eval, and (Trusted Types) HTML reaches the
document only through DOMPurify. The JSON endpoints' headers are left as they were.
"""

from __future__ import annotations

import hashlib
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Annotated, Any, Final

from litestar import Controller, Request, Response, get
from litestar.di import NamedDependency
from litestar.handlers import HTTPRouteHandler
from litestar.params import PathParameter

from reportsvc.api.errors import ApiError
from reportsvc.api.guard import caller, require_token
from reportsvc.api.reports import JobIdParam, load_job
from reportsvc.api.schemas import CamelStruct, JobSummary
from reportsvc.api.services import Services
from reportsvc.api.views import job_summary
from reportsvc.domain import Detail
from reportsvc.queue.reports import JobListRow

POLICY_DIRECTIVES: Final = (
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self'",
    "connect-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
    # Assigning a string to innerHTML (or any other HTML sink) throws: only DOMPurify's
    # policy can produce the values those sinks accept.
    "require-trusted-types-for 'script'",
    "trusted-types dompurify",
)
CONTENT_SECURITY_POLICY: Final = "; ".join(POLICY_DIRECTIVES)
PAGE_HEADERS: Final = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    # Always revalidated (cheap: an ETag), so a new version is picked up at once.
    "Cache-Control": "no-cache",
}
MEDIA_TYPES: Final = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
    ".txt": "text/plain",
    ".md": "text/markdown",
}
DETAILS: Final[tuple[Detail, ...]] = ("brief", "standard", "deep")


class Asset:
    """One file of the page, in memory, with the ETag of its content."""

    def __init__(self, content: bytes, media_type: str) -> None:
        self.content = content
        self.media_type = media_type
        self.etag = f'"{hashlib.sha256(content).hexdigest()[:32]}"'

    def response(self, request: Request[Any, Any, Any]) -> Response[bytes]:
        headers = {**PAGE_HEADERS, "ETag": self.etag}
        if self.etag in request.headers.get("if-none-match", ""):
            return Response(b"", status_code=304, headers=headers, media_type=self.media_type)
        return Response(self.content, headers=headers, media_type=self.media_type)


def load_assets(root: Traversable) -> dict[str, Asset]:
    """Every file under `root` with a known type, by its path relative to `root`."""
    assets: dict[str, Asset] = {}

    def walk(directory: Traversable, prefix: str) -> None:
        for entry in directory.iterdir():
            if entry.is_dir():
                walk(entry, f"{prefix}{entry.name}/")
                continue
            suffix = entry.name[entry.name.rfind(".") :] if "." in entry.name else ""
            if suffix in MEDIA_TYPES:
                assets[prefix + entry.name] = Asset(entry.read_bytes(), MEDIA_TYPES[suffix])

    walk(root, "")
    return assets


class PageOptions(CamelStruct):
    """What the page's form offers: the API's limits and the models a request may choose."""

    models: list[str]
    default_model: str
    details: list[Detail]
    default_sections: int
    max_sections: int
    max_topic_length: int


AssetPath = Annotated[str, PathParameter(description="A file of the page.")]


class PageDataController(Controller):
    """JSON the page needs beyond /reports, behind the same token guard."""

    path = "/ui"
    guards = (require_token,)
    include_in_schema = False

    @get("/options")
    async def page_options(self, services: NamedDependency[Services]) -> PageOptions:
        settings = services.settings
        return PageOptions(
            models=settings.allowed_models,
            default_model=settings.openai_model,
            details=list(DETAILS),
            default_sections=settings.default_sections,
            max_sections=settings.max_sections,
            max_topic_length=settings.max_topic_length,
        )

    @get("/jobs/{job_id:str}")
    async def job_item(
        self,
        request: Request[Any, Any, Any],
        job_id: JobIdParam,
        services: NamedDependency[Services],
    ) -> JobSummary:
        """A job as the list shows it: GET /reports/{jobId} has no topic before the report
        is complete, and the page titles the job with it."""
        job = await load_job(services.reports, job_id, caller(request))
        return job_summary(
            JobListRow(
                id=job.id,
                topic=job.topic,
                status=job.status,
                sections_total=job.sections_total,
                sections_done=job.sections_done,
                created_at=job.created_at,
                finished_at=job.finished_at,
            )
        )


def page_handlers() -> list[HTTPRouteHandler | type[Controller]]:
    """The page (`/`), its assets (`/assets/...`) and its JSON helpers (`/ui/...`)."""
    web = resources.files("reportsvc") / "web"
    page = Asset((web / "index.html").read_bytes(), MEDIA_TYPES[".html"])
    assets = load_assets(web / "assets")

    @get("/", include_in_schema=False, sync_to_thread=False)
    def index(request: Request[Any, Any, Any]) -> Response[bytes]:
        return page.response(request)

    @get("/assets/{path:path}", include_in_schema=False, sync_to_thread=False)
    def asset(request: Request[Any, Any, Any], path: AssetPath) -> Response[bytes]:
        found = assets.get(path.lstrip("/"))
        if found is None:
            raise ApiError(404, "not_found", f"no such resource: GET {request.url.path}")
        return found.response(request)

    return [index, asset, PageDataController]
