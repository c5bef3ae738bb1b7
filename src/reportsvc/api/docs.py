"""The OpenAPI document: every endpoint's answers with examples, errors included, and what
the generated document cannot know by itself (`complete_document`)."""

from __future__ import annotations

from typing import Any, Final

from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import (
    Example,
    Link,
    OpenAPI,
    OpenAPIFormat,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    Parameter,
    Reference,
    RequestBody,
    Schema,
)

from reportsvc.api.events import ProgressEvent
from reportsvc.api.schemas import (
    MAX_LANGUAGE_LENGTH,
    MAX_SOURCE_TITLE_LENGTH,
    CancelResult,
    ErrorBody,
    Health,
    JobAccepted,
    JobList,
    JobStatus,
    Readiness,
    RewriteAccepted,
    SourceCreated,
    SourceDeleted,
    SourceDetail,
    SourceList,
)
from reportsvc.api.validation import (
    CURSOR_PATTERN,
    DOCUMENT_PATTERN,
    IDEMPOTENCY_KEY_PATTERN,
    LANGUAGE_PATTERN,
    MAX_IDEMPOTENCY_KEY_LENGTH,
    TITLE_PATTERN,
    TOPIC_PATTERN,
)
from reportsvc.settings import Settings
from reportsvc.webhooks.addresses import MAX_URL_LENGTH

# What a webhook URL looks like before its host is resolved: http or https, a host, no user
# name, no spaces or control characters. Necessary, not sufficient: the handler also refuses
# a bad port, other invisible characters, and a host that does not resolve to a public
# address, which no pattern can say.
WEBHOOK_URL_PATTERN: Final = (
    "^[Hh][Tt][Tt][Pp][Ss]?://[^@/?#\\x00-\\x20\\x7f]+(?:[/?#][^\\x00-\\x20\\x7f]*)?$"
)

JOB_ID: Final = "5b8cfda7-4eaa-40bd-9c0e-93bb9d87ac30"
OUTLINE: Final = ["I. The Rise of the Republic", "II. The Augustan Principate", "III. Decline"]


def ok(data: type, description: str, **examples: dict[str, Any]) -> ResponseSpec:
    return ResponseSpec(
        data_container=data,
        description=description,
        examples=[Example(summary=name, value=value) for name, value in examples.items()],
    )


def error(status: int, description: str, *cases: tuple[str, str]) -> ResponseSpec:
    return ResponseSpec(
        data_container=ErrorBody,
        description=description,
        examples=[
            Example(summary=code, value={"status": status, "code": code, "error": message})
            for code, message in cases
        ],
    )


UNAVAILABLE: Final = error(
    503,
    "The database is unreachable; retry after the Retry-After delay.",
    ("database_unavailable", "the database is unreachable right now; try again in a few seconds"),
)
BAD_PARAMETER: Final = error(
    400,
    "A query parameter is not one of the documented values.",
    ("bad_request", "Validation failed for GET /reports/5b8cfda7-4eaa-40bd-9c0e-93bb9d87ac30"),
)
NOT_FOUND: Final = error(
    404,
    "No job with this id (a malformed id is answered the same way).",
    ("job_not_found", f"no job with id '{JOB_ID}'"),
)

CREATE_RESPONSES: Final = {
    202: ok(JobAccepted, "Queued; poll GET /reports/{jobId}.", queued={"jobId": JOB_ID}),
    400: error(
        400,
        "The request is malformed or the topic is not acceptable.",
        ("invalid_topic", "topic must not be empty or blank"),
        ("invalid_topic", "topic is 412 characters long; the limit is 300 (MAX_TOPIC_LENGTH)"),
        ("invalid_request", "topic: Expected str, got int"),
        ("invalid_request", "request body: Object contains unknown field colour"),
        ("invalid_json", "the request body is not valid JSON (unexpected end of input)"),
        (
            "invalid_idempotency_key",
            "Idempotency-Key must be 1 to 255 visible ASCII characters (spaces allowed inside)",
        ),
        (
            "invalid_webhook_url",
            (
                "webhookUrl must reach a public address: its host resolves to a loopback, "
                "private, link-local or cloud-metadata address"
            ),
        ),
        (
            "too_many_sources",
            "sources has 25 documents; the limit is 20 (SOURCES_MAX_DOCUMENTS)",
        ),
        ("invalid_source", "sources[1].text must not be empty or blank"),
        (
            "webhooks_disabled",
            (
                "webhookUrl cannot be used here: the service has no WEBHOOK_SECRET to sign "
                "deliveries with"
            ),
        ),
    ),
    413: error(
        413,
        "The body is larger than MAX_BODY_BYTES, or the sources than SOURCES_MAX_CHARACTERS.",
        ("request_too_large", "the request body is too large (MAX_BODY_BYTES)"),
        (
            "sources_too_large",
            (
                "sources have 250000 characters together; the limit is 200000 "
                "(SOURCES_MAX_CHARACTERS)"
            ),
        ),
    ),
    404: error(
        404,
        "`sources` names a source that does not exist, or belongs to another API token.",
        (
            "source_not_found",
            "sources[0]: no source with id '0f8e2f4c-1b7a-4c55-9a55-3f2b9c1d7e21'",
        ),
    ),
    409: error(
        409,
        "The Idempotency-Key was used before for a different request.",
        ("idempotency_key_reused", "this Idempotency-Key was already used for a different request"),
    ),
    503: UNAVAILABLE,
}

GET_RESPONSES: Final = {
    200: ok(
        JobStatus,
        "The job; `application/json`, or `text/markdown` for a completed report.",
        processing={
            "jobId": JOB_ID,
            "status": "processing",
            "progress": 0.5,
            "outline": OUTLINE,
            "partialSections": {OUTLINE[0]: "In 509 BC the Romans expelled their last king..."},
            "createdAt": "2026-11-27T10:00:00Z",
        },
        completed={
            "jobId": JOB_ID,
            "status": "completed",
            "progress": 1.0,
            "report": {
                "topic": "The Roman Empire",
                "outline": OUTLINE,
                "sections": dict.fromkeys(OUTLINE, "..."),
            },
            "createdAt": "2026-11-27T10:00:00Z",
            "finishedAt": "2026-11-27T10:00:41Z",
        },
        completed_with_sources={
            "jobId": JOB_ID,
            "status": "completed",
            "progress": 1.0,
            "report": {
                "topic": "The old harbour town",
                "outline": ["I. Lighthouse keepers", "II. Volcanic geology"],
                "sections": {
                    "I. Lighthouse keepers": "The keeper lit the lamp at dusk [1]. ...",
                    "II. Volcanic geology": (
                        "*None of the sources given for this report covers this section; it "
                        "is written without them.*\n\n..."
                    ),
                },
                "references": [
                    {
                        "number": 1,
                        "title": "Lighthouse keepers",
                        "passage": "# The lamp\n\nThe keeper lit the lamp at dusk...",
                    }
                ],
                "citationsRemoved": 1,
                "sectionsWithoutSources": ["II. Volcanic geology"],
            },
            "options": {"sections": 2, "detail": "standard", "summary": False, "sources": 2},
            "createdAt": "2026-11-27T10:00:00Z",
            "finishedAt": "2026-11-27T10:00:39Z",
        },
        completed_short={
            "jobId": JOB_ID,
            "status": "completed",
            "progress": 1.0,
            "report": {
                "topic": "The Roman Empire",
                "outline": OUTLINE[:2],
                "sections": dict.fromkeys(OUTLINE[:2], "..."),
            },
            "outlineShortfall": {"asked": 3, "outlined": 2},
            "createdAt": "2026-11-27T10:00:00Z",
            "finishedAt": "2026-11-27T10:00:52Z",
        },
        failed={
            "jobId": JOB_ID,
            "status": "failed",
            "error": 'Section 2 of 3 ("II. The Augustan Principate") could not be written after '
            "5 attempts: the model service failed (500)",
            "createdAt": "2026-11-27T10:00:00Z",
            "finishedAt": "2026-11-27T10:03:12Z",
        },
        cancelled={
            "jobId": JOB_ID,
            "status": "cancelled",
            "error": "the job was cancelled",
            "createdAt": "2026-11-27T10:00:00Z",
            "finishedAt": "2026-11-27T10:00:05Z",
        },
        awaiting_review={
            "jobId": JOB_ID,
            "status": "awaiting_review",
            "progress": 0.25,
            "outline": OUTLINE,
            "partialSections": {},
            "options": {
                "sections": 3,
                "detail": "standard",
                "summary": False,
                "reviewOutline": True,
            },
            "reviewDueAt": "2026-11-28T10:00:04Z",
            "createdAt": "2026-11-27T10:00:00Z",
        },
        with_history={
            "jobId": JOB_ID,
            "status": "completed",
            "progress": 1.0,
            "report": {
                "topic": "The Roman Empire",
                "outline": OUTLINE,
                "sections": dict.fromkeys(OUTLINE, "..."),
            },
            "history": [
                {
                    "index": 1,
                    "title": OUTLINE[1],
                    "text": "In 27 BC the Senate granted Octavian the name Augustus...",
                    "usage": {"promptTokens": 212, "completionTokens": 380, "totalTokens": 592},
                    "writtenAt": "2026-11-27T10:00:31Z",
                    "replacedAt": "2026-11-27T11:12:00Z",
                    "instruction": "shorter, with more dates",
                }
            ],
            "createdAt": "2026-11-27T10:00:00Z",
            "finishedAt": "2026-11-27T11:12:09Z",
        },
    ),
    400: BAD_PARAMETER,
    404: NOT_FOUND,
    409: error(
        409,
        "Markdown was asked for a report that is not completed.",
        ("report_not_ready", "the report is not completed (status writing)"),
    ),
    503: UNAVAILABLE,
}

LIST_RESPONSES: Final = {
    200: ok(
        JobList,
        "Jobs, newest first.",
        page={
            "jobs": [
                {
                    "jobId": JOB_ID,
                    "status": "processing",
                    "topic": "The Roman Empire",
                    "progress": 0.25,
                    "createdAt": "2026-11-27T10:00:00Z",
                }
            ],
            "nextCursor": "MjAyNi0xMS0yN1QxMDowMDowMCswMDowMHw1YjhjZmRhNw",
        },
    ),
    400: error(
        400,
        "A parameter is out of range or not recognised.",
        ("bad_request", "Validation failed for GET /reports"),
        ("invalid_cursor", "cursor is not one this API returned"),
    ),
    503: UNAVAILABLE,
}

MARKDOWN_REPORT: Final = (
    f"# The Roman Empire\n\n## {OUTLINE[0]}\n\nIn 509 BC the Romans expelled their last king...\n"
)
EVENT_STREAM: Final = (
    "event: progress\n"
    f'data: {{"jobId":"{JOB_ID}","step":"outline","progress":0.25,"outline":[...]}}\n\n'
    "event: progress\n"
    f'data: {{"jobId":"{JOB_ID}","step":"section","progress":0.5,"section":"{OUTLINE[0]}"}}\n\n'
    ": keep-alive\n\n"
    "event: completed\n"
    f'data: {{"jobId":"{JOB_ID}","status":"completed","progress":1.0,"report":{{...}}}}\n\n'
)
EVENTS_RESPONSES: Final = {
    # The schema of each event is set by `complete_document`; naming ProgressEvent here
    # makes Litestar add it to the document's components.
    200: ResponseSpec(
        data_container=ProgressEvent,
        media_type="text/event-stream",
        description="The job's events, until its final one.",
        examples=[Example(summary="a job from start to finish", value=EVENT_STREAM)],
    ),
    400: BAD_PARAMETER,
    404: NOT_FOUND,
    503: UNAVAILABLE,
}

CANCEL_RESPONSES: Final = {
    200: ok(CancelResult, "Cancelled.", cancelled={"jobId": JOB_ID, "status": "cancelled"}),
    400: BAD_PARAMETER,
    404: NOT_FOUND,
    409: error(
        409, "The job has already finished.", ("job_finished", "the job has already completed")
    ),
    503: UNAVAILABLE,
}

SOURCE_ID: Final = "0f8e2f4c-1b7a-4c55-9a55-3f2b9c1d7e21"
SOURCE_NOT_FOUND: Final = error(
    404,
    "No source with this id for this API token (a malformed id is answered the same way).",
    ("source_not_found", f"no source with id '{SOURCE_ID}'"),
)
SOURCE_CREATE_RESPONSES: Final = {
    201: ok(
        SourceCreated,
        "Stored; name it in the `sources` of POST /reports.",
        created={
            "sourceId": SOURCE_ID,
            "title": "Harbour authority annual review",
            "characters": 18204,
            "createdAt": "2026-11-27T10:00:00Z",
        },
    ),
    400: error(
        400,
        "The request is malformed, or the title or text is blank.",
        ("invalid_source", "source.title must not be empty or blank"),
        ("invalid_request", "text: Expected str, got int"),
        ("invalid_json", "the request body is not valid JSON (unexpected end of input)"),
    ),
    409: error(
        409,
        "This API token already stores SOURCES_MAX_STORED sources.",
        (
            "sources_full",
            (
                "this API token already stores 1000 sources (SOURCES_MAX_STORED); delete "
                "some with DELETE /sources/{sourceId} first"
            ),
        ),
    ),
    413: error(
        413,
        "The body is larger than MAX_BODY_BYTES, or the text than SOURCES_MAX_CHARACTERS.",
        (
            "sources_too_large",
            "source.text has 250000 characters; the limit is 200000 (SOURCES_MAX_CHARACTERS)",
        ),
    ),
    503: UNAVAILABLE,
}
SOURCE_LIST_RESPONSES: Final = {
    200: ok(
        SourceList,
        "This API token's sources, newest first.",
        page={
            "sources": [
                {
                    "sourceId": SOURCE_ID,
                    "title": "Harbour authority annual review",
                    "characters": 18204,
                    "createdAt": "2026-11-27T10:00:00Z",
                }
            ],
            "nextCursor": None,
        },
    ),
    400: error(
        400,
        "A parameter is out of range or not recognised.",
        ("bad_request", "Validation failed for GET /sources"),
        ("invalid_cursor", "cursor is not one this API returned"),
    ),
    503: UNAVAILABLE,
}
SOURCE_GET_RESPONSES: Final = {
    200: ok(
        SourceDetail,
        "The source, with its text.",
        source={
            "sourceId": SOURCE_ID,
            "title": "Harbour authority annual review",
            "text": "# Traffic\n\nThe port handled 41 million tonnes in 2025...",
            "characters": 18204,
            "createdAt": "2026-11-27T10:00:00Z",
        },
    ),
    400: BAD_PARAMETER,
    404: SOURCE_NOT_FOUND,
    503: UNAVAILABLE,
}
SOURCE_DELETE_RESPONSES: Final = {
    200: ok(SourceDeleted, "Deleted.", deleted={"sourceId": SOURCE_ID, "status": "deleted"}),
    400: BAD_PARAMETER,
    404: SOURCE_NOT_FOUND,
    503: UNAVAILABLE,
}

REVIEW_RESPONSES: Final = {
    200: ok(
        JobStatus,
        "The outline is the report's; its sections are queued.",
        approved={
            "jobId": JOB_ID,
            "status": "processing",
            "progress": 0.25,
            "outline": OUTLINE,
            "partialSections": {},
            "createdAt": "2026-11-27T10:00:00Z",
        },
    ),
    400: error(
        400,
        "The outline is not acceptable.",
        ("invalid_outline", "outline[2] repeats outline[0]: titles must be distinct"),
        ("invalid_outline", "outline[1] must not be empty or blank"),
        ("invalid_outline", "outline has 14 titles; the limit is 12 (MAX_SECTIONS)"),
        ("invalid_request", "outline: Expected array, got str"),
        ("invalid_json", "the request body is not valid JSON (unexpected end of input)"),
    ),
    404: NOT_FOUND,
    409: error(
        409,
        "The job is not awaiting a review: not created with reviewOutline, its outline not "
        "written yet, already reviewed (another review won), or ended.",
        (
            "not_awaiting_review",
            (
                "the job is not awaiting a review of its outline (status processing); only a "
                "job created with reviewOutline, once its outline is written, can be "
                "reviewed, once"
            ),
        ),
    ),
    413: error(
        413,
        "The body is larger than 64 KiB.",
        ("request_too_large", "the request body is too large"),
    ),
    503: UNAVAILABLE,
}

REWRITE_RESPONSES: Final = {
    202: ok(
        RewriteAccepted,
        "Queued; the job is processing until the section (and summary) are written.",
        queued={"jobId": JOB_ID, "index": 1, "title": OUTLINE[1], "status": "processing"},
    ),
    400: error(
        400,
        "The instruction or the index is not acceptable.",
        (
            "invalid_instruction",
            "instruction is 812 characters long; the limit is 500 (MAX_INSTRUCTION_LENGTH)",
        ),
        ("invalid_request", "request body: Object contains unknown field tone"),
        ("bad_request", "Validation failed for POST /reports/{jobId}/sections/-1/rewrite"),
    ),
    404: error(
        404,
        "No such job, or no section with this index.",
        ("job_not_found", f"no job with id '{JOB_ID}'"),
        (
            "section_not_found",
            "the report has no section 5: its outline has 3 sections, numbered 0 to 2",
        ),
    ),
    409: error(
        409,
        "The report is not completed: still being written, a rewrite under way, failed or "
        "cancelled.",
        (
            "report_not_completed",
            (
                "the report is processing: it is being written, or a section of it "
                "rewritten; try when it is completed"
            ),
        ),
    ),
    413: error(
        413,
        "The body is larger than 64 KiB.",
        ("request_too_large", "the request body is too large"),
    ),
    503: UNAVAILABLE,
}

HEALTH_RESPONSES: Final = {200: ok(Health, "The process is up.", up={"status": "ok"})}
READY_RESPONSES: Final = {
    200: ok(
        Readiness,
        "Ready to serve.",
        ready={"status": "ready", "database": "ok", "schemaRevision": "0002"},
    ),
    503: error(
        503,
        "Not ready: the database is unreachable, or not migrated to this version.",
        ("database_unavailable", "the database is unreachable"),
        (
            "schema_out_of_date",
            "the database schema is at 0001, this version needs 0002; run `reportsvc migrate`",
        ),
    ),
}
METRICS_RESPONSES: Final = {
    200: ResponseSpec(
        data_container=str,
        media_type="text/plain; version=0.0.4",
        description="Prometheus text format.",
        examples=[
            Example(
                summary="excerpt",
                value='reportsvc_jobs{status="writing"} 3.0\n'
                'reportsvc_queue_ready{step="section"} 17.0\n'
                'reportsvc_queue_oldest_ready_seconds{step="section"} 0.42\n',
            )
        ],
    )
}


# --- what the generated document cannot know --------------------------------------------

EVENTS_PATH: Final = "/reports/{job_id}/events"
REWRITE_PATH: Final = "/reports/{job_id}/sections/{index}/rewrite"


def complete_document(openapi: OpenAPI, settings: Settings) -> None:
    """Finish Litestar's document with what only the running settings know (the limits
    the handlers enforce, so that a request the document allows is accepted) and what it
    cannot express from types (each Server-Sent Event, with its data's schema)."""
    assert openapi.components.schemas is not None
    assert openapi.paths is not None
    openapi.components.schemas["CreateReport"] = create_report_schema(settings)
    openapi.components.schemas["ReviewOutline"] = Schema(
        type=OpenAPIType.OBJECT,
        title="ReviewOutline",
        required=["outline"],
        additional_properties=False,
        properties={
            "outline": outline_schema(
                settings,
                "The report's outline: the one proposed, as is or edited (its length may "
                "differ from `sections`).",
            )
        },
    )
    openapi.components.schemas["RewriteSection"] = rewrite_schema(settings)
    rewrite = openapi.paths[REWRITE_PATH].post
    assert rewrite is not None
    assert isinstance(rewrite.request_body, RequestBody)
    rewrite.request_body.required = False  # no body, or null: a rewrite without instruction
    openapi.components.schemas["CreateSource"] = document_schema(
        settings, "A document to upload. Unknown fields are refused."
    )
    openapi.components.schemas["CreateSource"].title = "CreateSource"
    reports, events = openapi.paths["/reports"], openapi.paths[EVENTS_PATH]
    assert reports.post is not None
    assert reports.get is not None
    assert events.get is not None
    assert events.get.responses is not None
    _parameter(reports.post, "Idempotency-Key").schema = Schema(
        type=OpenAPIType.STRING,
        min_length=1,
        max_length=MAX_IDEMPOTENCY_KEY_LENGTH,
        pattern=IDEMPOTENCY_KEY_PATTERN,
        examples=["5b0f3c1e-6a55-4d7e-9d0c-5a2a8f3e9b11"],
    )
    listed_sources = openapi.paths["/sources"].get
    assert listed_sources is not None
    for listing in (reports.get, listed_sources):
        _parameter(listing, "cursor").schema = Schema(
            type=OpenAPIType.STRING,
            pattern=CURSOR_PATTERN,
            description="`nextCursor` from the previous page; absent for the first page.",
        )
    answer = events.get.responses["200"]
    assert isinstance(answer, OpenAPIResponse)
    assert answer.content is not None
    answer.content["text/event-stream"].schema = event_schema()
    _link_ids(openapi)
    job = openapi.paths["/reports/{job_id}"].get
    assert job is not None
    assert job.responses is not None
    answer = job.responses["200"]
    assert isinstance(answer, OpenAPIResponse)
    assert answer.content is not None
    answer.content["text/markdown"] = OpenAPIMediaType(
        schema=Schema(type=OpenAPIType.STRING, description="A completed report as Markdown."),
        examples={"completed": Example(summary="a completed report", value=MARKDOWN_REPORT)},
    )


def create_report_schema(settings: Settings) -> Schema:
    """The body of POST /reports, with the limits of these settings."""
    schema = Schema(
        type=OpenAPIType.OBJECT,
        title="CreateReport",
        description="Start a report. Only `topic` is required; unknown fields are refused.",
        required=["topic"],
        additional_properties=False,
        properties={
            "topic": Schema(
                type=OpenAPIType.STRING,
                max_length=settings.max_topic_length,
                pattern=TOPIC_PATTERN,
                description=(
                    "What the report is about: at most MAX_TOPIC_LENGTH "
                    f"({settings.max_topic_length}) characters, not blank, no control "
                    "characters other than whitespace (which is collapsed to single spaces)."
                ),
                examples=["The Roman Empire"],
            ),
            "sections": Schema(
                type=OpenAPIType.INTEGER,
                minimum=1,
                maximum=settings.max_sections,
                description=(
                    f"How many sections: 1 to MAX_SECTIONS ({settings.max_sections}); default "
                    f"DEFAULT_SECTIONS ({settings.default_sections})."
                ),
                examples=[settings.default_sections],
            ),
            "language": Schema(
                type=OpenAPIType.STRING,
                max_length=MAX_LANGUAGE_LENGTH,
                pattern=LANGUAGE_PATTERN,
                description=(
                    "The report's language, by name: letters of any script, with single "
                    "spaces, hyphens or apostrophes between words. Default: English."
                ),
                examples=["French"],
            ),
            "model": Schema(
                type=OpenAPIType.STRING,
                enum=settings.allowed_models,
                description="OPENAI_MODEL (the default) or one of OPENAI_ALLOWED_MODELS.",
                examples=[settings.openai_model],
            ),
            "detail": Schema(
                type=OpenAPIType.STRING,
                enum=["brief", "standard", "deep"],
                description=(
                    "Section length: brief (~120 words), standard (~280, the default), deep (~580)."
                ),
            ),
            "outline": outline_schema(
                settings,
                "Your own outline: no outline is asked of the model, and the report has as "
                "many sections as it has titles (`sections` is not used).",
            ),
            "reviewOutline": Schema(
                type=OpenAPIType.BOOLEAN,
                description=(
                    "Stop after the outline (the model's, or your `outline` as a draft), in "
                    "status `awaiting_review`, until PUT /reports/{jobId}/outline approves it "
                    "(as is or edited); not reviewed within OUTLINE_REVIEW_TIMEOUT "
                    f"({settings.outline_review_timeout}), the job fails."
                ),
            ),
        },
    )
    assert schema.properties is not None
    schema.properties["sources"] = sources_schema(settings)
    if settings.webhook_secret:  # without a secret, webhookUrl is refused like any unknown field
        assert schema.properties is not None
        schema.properties["webhookUrl"] = Schema(
            type=OpenAPIType.STRING,
            min_length=1,
            max_length=MAX_URL_LENGTH,
            pattern=WEBHOOK_URL_PATTERN,
            description=(
                "An http or https URL to POST the job to when it completes, fails or is "
                "cancelled (signed per Standard Webhooks; see README); no user name or "
                "password in it. Its host must resolve to a public address: loopback, "
                "private, link-local and cloud-metadata addresses are refused"
                + (
                    " (allowed here: WEBHOOK_ALLOW_PRIVATE_NETWORKS)."
                    if settings.webhook_allow_private_networks
                    else "."
                )
            ),
            examples=["https://example.com/hooks/reports"],
        )
    return schema


def sources_schema(settings: Settings) -> Schema:
    """The `sources` of POST /reports, with the limits of these settings."""
    characters = settings.sources_max_characters
    return Schema(
        type=OpenAPIType.ARRAY,
        max_items=settings.sources_max_documents,
        description=(
            "Documents to write the report from: each given here as `{title, text}` (plain "
            "text or Markdown), or as the `sourceId` of a document uploaded with POST "
            f"/sources. At most SOURCES_MAX_DOCUMENTS ({settings.sources_max_documents}) "
            f"documents of SOURCES_MAX_CHARACTERS ({characters}) characters together (more: "
            "413). Each section is given the passages most relevant to its title and cites "
            "them as [n]; the report lists them in `references`. An id that does not exist "
            "or belongs to another API token is a 404 (`source_not_found`). An empty list is "
            "the same as none."
        ),
        items=Schema(
            one_of=[
                Schema(
                    type=OpenAPIType.STRING,
                    format=OpenAPIFormat.UUID,
                    description="The sourceId of an uploaded document.",
                ),
                document_schema(settings, "A document given with the request."),
            ]
        ),
        examples=[[{"title": "Harbour review 2025", "text": "The port handled..."}, SOURCE_ID]],
    )


def document_schema(settings: Settings, description: str) -> Schema:
    """A source document, `{title, text}`, with the limits of these settings."""
    return Schema(
        type=OpenAPIType.OBJECT,
        description=description,
        required=["title", "text"],
        additional_properties=False,
        properties={
            "title": Schema(
                type=OpenAPIType.STRING,
                max_length=MAX_SOURCE_TITLE_LENGTH,
                pattern=DOCUMENT_PATTERN,
                description="Not blank, no NUL character; whitespace is collapsed.",
                examples=["Harbour authority annual review"],
            ),
            "text": Schema(
                type=OpenAPIType.STRING,
                max_length=settings.sources_max_characters,
                pattern=DOCUMENT_PATTERN,
                description=(
                    "Plain text or Markdown: not blank, no NUL character, at most "
                    f"SOURCES_MAX_CHARACTERS ({settings.sources_max_characters}) characters."
                ),
                examples=["# Traffic\n\nThe port handled 41 million tonnes in 2025..."],
            ),
        },
    )


def outline_schema(settings: Settings, description: str) -> Schema:
    """A client's outline, with the limits of these settings: exactly what
    `clean_outline` in api/validation.py accepts."""
    return Schema(
        type=OpenAPIType.ARRAY,
        min_items=1,
        max_items=settings.max_sections,
        unique_items=True,
        items=Schema(
            type=OpenAPIType.STRING,
            min_length=1,
            max_length=settings.max_title_length,
            pattern=TITLE_PATTERN,
        ),
        description=(
            f"{description} 1 to MAX_SECTIONS ({settings.max_sections}) different titles, "
            f"each at most MAX_TITLE_LENGTH ({settings.max_title_length}) characters, not "
            "blank, on one line (no control characters); kept exactly as sent."
        ),
        examples=[OUTLINE],
    )


def rewrite_schema(settings: Settings) -> Schema:
    return Schema(
        type=OpenAPIType.OBJECT,
        title="RewriteSection",
        description="Optional: an empty body asks for a new version without instruction.",
        additional_properties=False,
        properties={
            "instruction": Schema(
                type=OpenAPIType.STRING,
                min_length=1,
                max_length=settings.max_instruction_length,
                pattern=TOPIC_PATTERN,
                description=(
                    "What to change, in words: at most MAX_INSTRUCTION_LENGTH "
                    f"({settings.max_instruction_length}) characters, not blank, no control "
                    "characters other than whitespace."
                ),
                examples=["shorter, with more dates"],
            )
        },
    )


def event_schema() -> Schema:
    """One Server-Sent Event of a job's stream, as a client's parser sees it: the event's
    name and its data, a JSON document whose schema depends on the name."""
    final = {
        "completed": Schema(required=["status", "report"]),
        "failed": Schema(required=["status", "error"]),
        "cancelled": Schema(required=["status"]),
    }
    return Schema(
        one_of=[
            _event("progress", "One step finished.", Reference(ref=_component(ProgressEvent))),
            _event(
                "awaiting_review",
                "The outline is written and waits for PUT /reports/{jobId}/outline; the data "
                "is the job as GET returns it, with the proposed `outline`. The stream goes on.",
                Schema(
                    all_of=[
                        Reference(ref=_component(JobStatus)),
                        Schema(
                            required=["status", "outline"],
                            properties={"status": Schema(const="awaiting_review")},
                        ),
                    ]
                ),
            ),
            *(
                _event(
                    name,
                    f"The job {name}; the data is the job as GET /reports/{{jobId}} returns it. "
                    "The stream ends here.",
                    Schema(
                        all_of=[
                            Reference(ref=_component(JobStatus)),
                            Schema(
                                required=extra.required,
                                properties={"status": Schema(const=name)},
                            ),
                        ]
                    ),
                )
                for name, extra in final.items()
            ),
        ]
    )


def _event(name: str, description: str, data: Schema | Reference) -> Schema:
    return Schema(
        type=OpenAPIType.OBJECT,
        description=description,
        required=["event", "data"],
        properties={
            "event": Schema(const=name),
            "data": Schema(
                type=OpenAPIType.STRING,
                content_media_type="application/json",
                content_schema=data,
            ),
        },
    )


# What a created resource's id leads to: (path of the creating POST, its status, the body
# field with the id, the path parameter, the operations that take it).
_LINKS: Final = (
    ("/reports", "202", "jobId", "job_id",
     ("ReportsJobIdGetReport", "ReportsJobIdCancelReport", "ReportsJobIdEventsReportEvents")),
    ("/sources", "201", "sourceId", "source_id",
     ("SourcesSourceIdGetSource", "SourcesSourceIdDeleteSource")),
)  # fmt: skip


def _link_ids(openapi: OpenAPI) -> None:
    """OpenAPI links from each POST that creates something to the operations that take its
    id, so that clients and tools (schemathesis's stateful phase) can follow them."""
    assert openapi.paths is not None
    for path, status, field, parameter, operations in _LINKS:
        created = openapi.paths[path].post
        assert created is not None
        assert created.responses is not None
        answer = created.responses[status]
        assert isinstance(answer, OpenAPIResponse)
        answer.links = {
            operation: Link(
                operation_id=operation, parameters={parameter: f"$response.body#/{field}"}
            )
            for operation in operations
        }


def _component(struct: type) -> str:
    return f"#/components/schemas/{struct.__name__}"


def _parameter(operation: Operation, name: str) -> Parameter:
    for parameter in operation.parameters or ():
        if isinstance(parameter, Parameter) and parameter.name == name:
            return parameter
    raise LookupError(f"no parameter {name!r}")
