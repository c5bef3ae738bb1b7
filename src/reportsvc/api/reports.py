"""The /reports endpoints."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec
from litestar import Controller, Request, Response, delete, get, post, put
from litestar.di import NamedDependency
from litestar.openapi.spec import Example
from litestar.params import Body, HeaderParameter, JSONBody, PathParameter, QueryParameter
from litestar.response import ServerSentEvent
from litestar.status_codes import HTTP_202_ACCEPTED
from msgspec import UnsetType

from reportsvc.api import docs
from reportsvc.api.errors import ApiError
from reportsvc.api.events import job_events
from reportsvc.api.guard import caller, require_token
from reportsvc.api.schemas import (
    PUBLIC_STATUS,
    CancelResult,
    CreateReport,
    JobAccepted,
    JobList,
    JobStatus,
    PublicStatus,
    ReviewOutline,
    RewriteAccepted,
    RewriteSection,
)
from reportsvc.api.services import Services
from reportsvc.api.sources import read_sources
from reportsvc.api.validation import (
    check_idempotency_key,
    clean_instruction,
    clean_outline,
    clean_topic,
    decode_cursor,
    encode_cursor,
    job_options,
    parse_job_id,
    strict_request,
    strict_review,
    strict_rewrite,
)
from reportsvc.api.views import job_status, job_summary, markdown, section_versions
from reportsvc.api.webhooks import check_webhook_url
from reportsvc.domain import JobOptions
from reportsvc.domain import JobStatus as JobState
from reportsvc.metrics import JOBS_CREATED, OUTLINE_REVIEWS, SECTION_REWRITES
from reportsvc.queue.reports import (
    AdmissionRefused,
    JobNotFound,
    JobRow,
    JobSources,
    JobStateConflict,
    ReportStore,
)
from reportsvc.sources.passages import search_config

# Taken as a string and parsed in the handler, so a malformed id is a 404 like an unknown one.
JobIdParam = Annotated[
    str,
    PathParameter(
        description="The jobId returned by POST /reports.",
        examples=[Example(value="5b8cfda7-4eaa-40bd-9c0e-93bb9d87ac30")],
    ),
]

# Public statuses, as the internal states they stand for.
STATUS_FILTER: dict[PublicStatus, list[JobState]] = {
    public: [state for state, shown in PUBLIC_STATUS.items() if shown == public]
    for public in set(PUBLIC_STATUS.values())
}
MARKDOWN = "text/markdown"


async def load_job(store: ReportStore, raw_id: str, owner: str | None) -> JobRow:
    """The job, or a 404 when it does not exist or belongs to another API token."""
    job = await store.get_job(parse_job_id(raw_id), owner)
    if job is None:
        raise ApiError(404, "job_not_found", f"no job with id {raw_id!r}")
    return job


def view(job: JobRow, services: Services) -> JobStatus:
    """The job as GET shows it, with this API's prices and review timeout."""
    settings = services.settings
    return job_status(
        job,
        settings.openai_prices,
        review_timeout_seconds=settings.outline_review_timeout_seconds,
    )


def _rewrite_refused(refused: JobStateConflict, index: int) -> ApiError:
    if refused.status is JobState.COMPLETED:
        length = refused.outline_length or 0
        return ApiError(
            404,
            "section_not_found",
            f"the report has no section {index}: its outline has {length} sections, "
            f"numbered 0 to {length - 1}",
        )
    if refused.status is JobState.WRITING and refused.outline_length is not None:
        reason = "it is being written, or a section of it rewritten; try when it is completed"
    else:
        reason = "only a completed report's sections can be rewritten"
    return ApiError(
        409,
        "report_not_completed",
        f"the report is {PUBLIC_STATUS[refused.status]}: {reason}",
    )


def _address(request: Request[Any, Any, Any]) -> str:
    return request.client.host if request.client else "unknown"


def _no_room(refused: AdmissionRefused) -> ApiError:
    """The refusal tells a caller only about its own jobs."""
    if refused.reason == "owner_full":
        return ApiError(
            429,
            "too_many_pending",
            f"this API token already has {refused.bound} reports waiting or being written "
            "(MAX_PENDING_JOBS_PER_OWNER); try again when some have finished",
            {"Retry-After": "10"},
        )
    return ApiError(
        503,
        "queue_full",
        "too many reports are waiting or being written right now; try again later",
        {"Retry-After": "10"},
    )


def wants_markdown(request: Request[Any, Any, Any], format_: str | None) -> bool:
    """`?format=` decides; else the Accept header, by its q-values (RFC 9110 12.5.1):
    Markdown only when it is acceptable (q > 0) and preferred to JSON."""
    if format_ is not None:
        return format_ == "markdown"
    accept = request.headers.get("accept", "")
    return accept_quality(accept, MARKDOWN) > accept_quality(accept, "application/json")


def accept_quality(accept: str, media_type: str) -> float:
    """The q-value an Accept header gives `media_type`: that of its most specific matching
    range (`type/subtype` over `type/*` over `*/*`); 0 when none matches."""
    kind = media_type.split("/", maxsplit=1)[0]
    best: tuple[int, float] = (-1, 0.0)
    for item in accept.split(","):
        media, *params = (part.strip() for part in item.split(";"))
        media = media.lower()
        specificity = {media_type: 2, f"{kind}/*": 1, "*/*": 0}.get(media, -1)
        if specificity <= best[0]:
            continue
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = min(max(float(value), 0.0), 1.0)
                except ValueError:
                    quality = 0.0
        best = (specificity, quality)
    return best[1]


class ReportController(Controller):
    path = "/reports"
    tags = ("reports",)
    # Every endpoint here needs the caller's token (when the API has tokens), checked before
    # anything else happens, the body included.
    guards = (require_token,)

    @post(
        "/",
        status_code=HTTP_202_ACCEPTED,
        summary="Start a report",
        description=(
            "Queues a report and returns its job id at once; the outline and sections are "
            "written in the background by workers. With an `Idempotency-Key` header, "
            "repeating the request returns the same job id and creates nothing new."
        ),
        responses=docs.CREATE_RESPONSES,
    )
    async def create_report(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[CreateReport],
        services: NamedDependency[Services],
        idempotency_key: Annotated[
            str | None,
            HeaderParameter(
                name="Idempotency-Key",
                required=False,
                description="Any unique string (a UUID is a good choice), at most 255 characters.",
                examples=[Example(value="5b0f3c1e-6a55-4d7e-9d0c-5a2a8f3e9b11")],
            ),
        ] = None,
    ) -> Response[JobAccepted]:
        settings, store = services.settings, services.reports
        owner = caller(request)
        services.rate_limit.check(owner or _address(request))
        data = strict_request(await request.body())
        topic = clean_topic(data.topic, settings.max_topic_length)
        model, options, outline = job_options(data, settings)
        check_idempotency_key(idempotency_key)
        webhook_url = None
        if not isinstance(data.webhook_url, UnsetType):
            webhook_url = await check_webhook_url(data.webhook_url, settings)
        sources = None
        if not isinstance(data.sources, UnsetType):
            sources = await read_sources(data.sources, owner, services)
        if sources is not None:
            options = msgspec.structs.replace(
                options, sources=sources.documents, sources_digest=sources.digest
            )
        request_key = (topic, model, options, webhook_url, outline)
        try:
            job_id = await store.create_job(
                topic=topic,
                model=model,
                options=options,
                idempotency_key=idempotency_key,
                timeout_seconds=settings.job_timeout_seconds,
                owner=owner,
                webhook_url=webhook_url,
                sources=(
                    None
                    if sources is None
                    else JobSources(sources.passages, search_config(options.language))
                ),
                outline=outline,
            )
        except AdmissionRefused as refused:
            # A repeated request whose job exists gets it back, full queue or not.
            existing = idempotency_key and await store.find_job_by_key(idempotency_key, owner)
            if not existing:
                raise _no_room(refused) from None
            job_id = await self._replay(store, idempotency_key or "", owner, request_key)
        else:
            if job_id is None:
                assert idempotency_key is not None
                job_id = await self._replay(store, idempotency_key, owner, request_key)
            else:
                JOBS_CREATED.inc()
        return Response(
            JobAccepted(job_id=job_id),
            status_code=HTTP_202_ACCEPTED,
            headers={"Location": f"/reports/{job_id}"},
        )

    @staticmethod
    async def _replay(
        store: ReportStore,
        key: str,
        owner: str | None,
        request: tuple[str, str, JobOptions, str | None, list[str] | None],
    ) -> UUID:
        existing = await store.find_job_by_key(key, owner)
        if existing is None:  # pragma: no cover - the job was deleted between two statements
            raise ApiError(409, "conflict", "this Idempotency-Key was just used; retry")
        job_id, *stored = existing
        if tuple(stored) != request:
            # A conflict with the state the key is in, as for any other state: 409. (The
            # Idempotency-Key draft suggests 422, which reads as "your body is invalid"; it
            # is not, and clients and tools built on 4xx semantics would be misled.)
            raise ApiError(
                409,
                "idempotency_key_reused",
                "this Idempotency-Key was already used for a different request",
            )
        return job_id

    @get(
        "/",
        summary="Recent jobs, newest first",
        description=(
            "Filter by public `status`; page with `limit` and the `nextCursor` of the "
            "previous page."
        ),
        responses=docs.LIST_RESPONSES,
    )
    async def list_reports(
        self,
        request: Request[Any, Any, Any],
        services: NamedDependency[Services],
        status: Annotated[
            PublicStatus | None, QueryParameter(description="Only jobs with this status.")
        ] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=100, description="Page size.")] = 20,
        cursor: Annotated[
            str | None, QueryParameter(description="`nextCursor` from the previous page.")
        ] = None,
    ) -> JobList:
        owner = caller(request)
        rows = await services.reports.list_jobs(
            statuses=STATUS_FILTER[status] if status else None,
            limit=limit + 1,
            before=None if cursor is None else decode_cursor(cursor),
            owner=owner,
        )
        page = rows[:limit]
        next_cursor = None
        if len(rows) > limit:
            next_cursor = encode_cursor(page[-1].created_at, page[-1].id)
        return JobList(jobs=[job_summary(r) for r in page], next_cursor=next_cursor)

    @get(
        "/{job_id:str}",
        summary="Status, progress and result of a report",
        description=(
            "`status` is `processing` (with `progress` from 0 to 1, and once the outline "
            "exists, `outline` and the `partialSections` finished so far), `awaiting_review` "
            "(created with `reviewOutline`: the proposed `outline`, and `reviewDueAt`), "
            "`completed` (with `report`, and `rewriteError` if the latest section rewrite "
            "failed), `failed` (with `error`) or `cancelled`. `?history=true` adds the texts "
            "section rewrites replaced. With `Accept: text/markdown` or `?format=markdown`, a "
            "completed report comes back as a Markdown document."
        ),
        responses=docs.GET_RESPONSES,
    )
    async def get_report(
        self,
        request: Request[Any, Any, Any],
        job_id: JobIdParam,
        services: NamedDependency[Services],
        format_: Annotated[
            Literal["json", "markdown"] | None,
            QueryParameter(name="format", description="`markdown` for a Markdown document."),
        ] = None,
        history: Annotated[  # noqa: FBT002 - a query parameter, named by the URL
            bool,
            QueryParameter(
                description="`true`: add `history`, the texts section rewrites replaced."
            ),
        ] = False,
    ) -> Response[JobStatus] | Response[str]:
        job = await load_job(services.reports, job_id, caller(request))
        if not wants_markdown(request, format_):
            status = view(job, services)
            if history:
                status.history = section_versions(await services.reports.section_history(job.id))
            return Response(status)
        if job.status is not JobState.COMPLETED:
            raise ApiError(
                409,
                "report_not_ready",
                f"the report is not completed (status {PUBLIC_STATUS[job.status]})",
            )
        # Litestar adds "; charset=utf-8" to text/* media types itself.
        return Response(markdown(job), media_type=MARKDOWN)

    @put(
        "/{job_id:str}/outline",
        status_code=200,
        summary="Approve (or edit) the outline of a report awaiting review",
        description=(
            "For a job created with `reviewOutline: true` and now `awaiting_review`: the "
            "outline given here (the proposed one as is, or edited: titles distinct, not "
            "blank, at most MAX_TITLE_LENGTH characters, 1 to MAX_SECTIONS of them, whatever "
            "`sections` asked for) is the report's, and its sections are queued. Answers the "
            "job, now `processing`. A job in any other status answers 409 (of concurrent "
            "reviews exactly one wins); a review that does not come within "
            "OUTLINE_REVIEW_TIMEOUT fails the job."
        ),
        responses=docs.REVIEW_RESPONSES,
    )
    async def review_outline(
        self,
        request: Request[Any, Any, Any],
        job_id: JobIdParam,
        data: JSONBody[ReviewOutline],
        services: NamedDependency[Services],
    ) -> JobStatus:
        owner = caller(request)
        parsed = parse_job_id(job_id)
        data = strict_review(await request.body())
        outline = clean_outline(data.outline, services.settings)
        try:
            await services.reports.approve_outline(
                parsed, owner, outline, services.settings.job_timeout_seconds
            )
        except JobNotFound:
            raise ApiError(404, "job_not_found", f"no job with id {job_id!r}") from None
        except JobStateConflict as refused:
            raise ApiError(
                409,
                "not_awaiting_review",
                "the job is not awaiting a review of its outline (status "
                f"{PUBLIC_STATUS[refused.status]}); only a job created with reviewOutline, "
                "once its outline is written, can be reviewed, once",
            ) from None
        OUTLINE_REVIEWS.labels("approved").inc()
        return view(await load_job(services.reports, job_id, owner), services)

    @post(
        "/{job_id:str}/sections/{index:int}/rewrite",
        status_code=HTTP_202_ACCEPTED,
        summary="Write one section of a completed report again",
        description=(
            "Queues section `index` (from 0, in outline order) of a completed report to be "
            "written again, optionally following `instruction`. The job shows `processing` "
            "until the section (and then the summary, if the report has one) is written, and "
            "`completed` again after, with a new webhook event; the other sections stay as "
            "they are. The replaced texts are kept: GET /reports/{jobId}?history=true. Usage "
            "and cost add up over every version. One rewrite at a time per report: while one "
            "is under way, another answers 409, as does a job that is not completed."
        ),
        responses=docs.REWRITE_RESPONSES,
    )
    async def rewrite_section(
        self,
        request: Request[Any, Any, Any],
        job_id: JobIdParam,
        index: Annotated[
            int,
            # An outline has at most 20 titles (MAX_SECTIONS is at most 20).
            PathParameter(
                ge=0,
                le=19,
                description="The section's index in the outline, from 0.",
                examples=[Example(value=1)],
            ),
        ],
        services: NamedDependency[Services],
        data: Annotated[
            RewriteSection | None, Body(description="Optional; an empty body is no instruction.")
        ] = None,
    ) -> Response[RewriteAccepted]:
        owner = caller(request)
        parsed = parse_job_id(job_id)
        data = strict_rewrite(await request.body())
        instruction = clean_instruction(data, services.settings)
        try:
            title = await services.reports.rewrite_section(
                parsed, owner, index, instruction, services.settings.job_timeout_seconds
            )
        except JobNotFound:
            raise ApiError(404, "job_not_found", f"no job with id {job_id!r}") from None
        except JobStateConflict as refused:
            raise _rewrite_refused(refused, index) from None
        SECTION_REWRITES.inc()
        return Response(
            RewriteAccepted(job_id=parsed, index=index, title=title, status="processing"),
            status_code=HTTP_202_ACCEPTED,
            headers={"Location": f"/reports/{parsed}"},
        )

    @get(
        "/{job_id:str}/events",
        summary="Watch a report's progress (Server-Sent Events)",
        description=(
            "A `text/event-stream`. Each finished step sends a `progress` event (data: "
            "`jobId`, `step` (`outline` or `section`), `progress`, and the `outline` or the "
            "`section` title); steps finished before the client connected come first. A job "
            "that stops for its outline's review sends an `awaiting_review` event (the job) "
            "and the stream goes on. The stream ends with one `completed`, `failed` or "
            "`cancelled` event whose data is the job as GET /reports/{jobId} returns it. "
            "Comment lines keep the connection alive."
        ),
        responses=docs.EVENTS_RESPONSES,
    )
    async def report_events(
        self,
        request: Request[Any, Any, Any],
        job_id: JobIdParam,
        services: NamedDependency[Services],
    ) -> ServerSentEvent:
        owner = caller(request)
        job = await load_job(services.reports, job_id, owner)
        events = job_events(
            services.reports,
            services.events,
            job,
            services.settings.openai_prices,
            allowed=lambda: services.auth.still_valid(owner),
            review_timeout_seconds=services.settings.outline_review_timeout_seconds,
        )
        return ServerSentEvent(events)

    @delete(
        "/{job_id:str}",
        status_code=200,
        summary="Cancel a report",
        description=(
            "Stops a job that is still processing: nothing more is started for it, and "
            "running steps are abandoned at their next checkpoint. Cancelling a cancelled "
            "job is a no-op; a finished job cannot be cancelled (409)."
        ),
        responses=docs.CANCEL_RESPONSES,
    )
    async def cancel_report(
        self,
        request: Request[Any, Any, Any],
        job_id: JobIdParam,
        services: NamedDependency[Services],
    ) -> CancelResult:
        parsed = parse_job_id(job_id)
        status = await services.reports.cancel_job(parsed, caller(request))
        if status is None:
            raise ApiError(404, "job_not_found", f"no job with id {job_id!r}")
        if status is not JobState.CANCELLED:
            raise ApiError(409, "job_finished", f"the job has already {status}")
        return CancelResult(job_id=parsed, status="cancelled")
