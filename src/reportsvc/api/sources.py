"""Sources: the /sources endpoints, and the `sources` of POST /reports read into the
passages a new job is created with.

A report's sources are documents given in the request (`{"title", "text"}`) or the ids of
documents uploaded before with POST /sources. Either way the job gets its own copy, split
into numbered passages, when it is created: deleting an uploaded source later does not
change a job that used it. With API tokens, an uploaded source belongs to the token that
uploaded it, like a job: another token gets 404 for it, also when it names it in POST
/reports (`source_not_found`), exactly as for an id that does not exist.
"""

from __future__ import annotations

import hashlib
import re
from typing import Annotated, Any, Final
from uuid import UUID

import msgspec
from litestar import Controller, Request, Response, delete, get, post
from litestar.di import NamedDependency
from litestar.openapi.spec import Example
from litestar.params import JSONBody, PathParameter, QueryParameter
from litestar.status_codes import HTTP_201_CREATED

from reportsvc.api import docs
from reportsvc.api.bodies import undecodable
from reportsvc.api.errors import ApiError
from reportsvc.api.guard import caller, require_token
from reportsvc.api.schemas import (
    MAX_SOURCE_TITLE_LENGTH,
    CreateSource,
    InlineSource,
    SourceCreated,
    SourceDeleted,
    SourceDetail,
    SourceList,
    SourceSummary,
)
from reportsvc.api.services import Services
from reportsvc.api.validation import DOCUMENT_PATTERN, decode_cursor, encode_cursor
from reportsvc.queue.reports import NewPassage
from reportsvc.queue.sources import SourceRow
from reportsvc.settings import Settings
from reportsvc.sources.passages import split_passages

_DOCUMENT: Final = re.compile(DOCUMENT_PATTERN)

SourceIdParam = Annotated[
    str,
    PathParameter(
        description="The sourceId returned by POST /sources.",
        examples=[Example(value="0f8e2f4c-1b7a-4c55-9a55-3f2b9c1d7e21")],
    ),
]


class NewSources(msgspec.Struct, frozen=True):
    """A report's sources, read: the passages to copy into the job, how many documents,
    and a digest that tells two different sets of sources apart."""

    passages: list[NewPassage]
    documents: int
    digest: str


def clean_document(title: str, text: str, field: str, settings: Settings) -> tuple[str, str]:
    """A document's title (whitespace collapsed) and text, or a 400/413 naming `field`
    (exactly what DOCUMENT_PATTERN and the document's maxLength say)."""
    if len(title) > MAX_SOURCE_TITLE_LENGTH:
        raise ApiError(
            400,
            "invalid_source",
            f"{field}.title is {len(title)} characters long; the limit is "
            f"{MAX_SOURCE_TITLE_LENGTH}",
        )
    for name, value in (("title", title), ("text", text)):
        if "\x00" in value:
            raise ApiError(400, "invalid_source", f"{field}.{name} must not contain NUL characters")
        if not _DOCUMENT.fullmatch(value):
            raise ApiError(400, "invalid_source", f"{field}.{name} must not be empty or blank")
    if len(text) > settings.sources_max_characters:
        raise _too_large(f"{field}.text has {len(text)} characters", settings)
    return " ".join(title.split()), text


def _too_large(what: str, settings: Settings) -> ApiError:
    return ApiError(
        413,
        "sources_too_large",
        f"{what}; the limit is {settings.sources_max_characters} (SOURCES_MAX_CHARACTERS)",
    )


async def read_sources(
    given: list[str | InlineSource], owner: str | None, services: Services
) -> NewSources | None:
    """The sources of a POST /reports, checked and split into passages; None for none."""
    settings = services.settings
    if not given:
        return None
    if len(given) > settings.sources_max_documents:
        raise ApiError(
            400,
            "too_many_sources",
            f"sources has {len(given)} documents; the limit is "
            f"{settings.sources_max_documents} (SOURCES_MAX_DOCUMENTS)",
        )
    ids = _named_ids(given)
    stored = await services.sources.get_many(list(ids), owner) if ids else {}
    documents: list[tuple[UUID | None, str, str]] = []
    for i, item in enumerate(given):
        field = f"sources[{i}]"
        if isinstance(item, str):
            found = stored.get(UUID(item))
            if found is None:
                raise ApiError(404, "source_not_found", f"{field}: no source with id {item!r}")
            documents.append((found.id, found.title, found.text))
        else:
            title, text = clean_document(item.title, item.text, field, settings)
            documents.append((None, title, text))
    total = sum(len(text) for _, _, text in documents)
    if total > settings.sources_max_characters:
        raise _too_large(f"sources have {total} characters together", settings)
    passages: list[NewPassage] = []
    for i, (source_id, title, text) in enumerate(documents):
        # Never empty: the text is not blank.
        pieces = split_passages(text)
        passages.extend(NewPassage(i, source_id, title, piece) for piece in pieces)
    return NewSources(passages=passages, documents=len(documents), digest=_digest(given))


def _named_ids(given: list[str | InlineSource]) -> dict[UUID, int]:
    """The uploaded sources named, with the place of each in `sources`."""
    ids: dict[UUID, int] = {}
    for i, item in enumerate(given):
        if isinstance(item, str):
            source_id = _source_id(item, f"sources[{i}]")
            if source_id in ids:
                raise ApiError(
                    400,
                    "invalid_source",
                    f"sources[{i}] names the same source as sources[{ids[source_id]}]",
                )
            ids[source_id] = i
    return ids


def _source_id(raw: str, field: str) -> UUID:
    try:
        return UUID(raw)
    except ValueError:
        raise ApiError(
            400, "invalid_source", f"{field}: {raw!r} is not a source id (a UUID)"
        ) from None


def _digest(given: list[str | InlineSource]) -> str:
    """sha256 of the sources as given (ids as ids, not their text)."""
    canonical = [item if isinstance(item, str) else [item.title, item.text] for item in given]
    return hashlib.sha256(msgspec.json.encode(canonical)).hexdigest()


_STRICT: Final = msgspec.json.Decoder(CreateSource, strict=True)


def _summary(row: SourceRow) -> SourceSummary:
    return SourceSummary(
        source_id=row.id, title=row.title, characters=row.characters, created_at=row.created_at
    )


class SourceController(Controller):
    path = "/sources"
    tags = ("sources",)
    guards = (require_token,)

    @post(
        "/",
        status_code=HTTP_201_CREATED,
        summary="Upload a source document",
        description=(
            "Stores a document (plain text or Markdown) that reports can then name by its "
            "`sourceId` in `sources`. With API tokens it belongs to the token that uploaded "
            "it. A report takes its own copy when it is created."
        ),
        responses=docs.SOURCE_CREATE_RESPONSES,
    )
    async def create_source(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[CreateSource],
        services: NamedDependency[Services],
    ) -> Response[SourceCreated]:
        owner = caller(request)
        services.rate_limit.check(owner or (request.client.host if request.client else "?"))
        try:
            data = _STRICT.decode(await request.body())
        except msgspec.ValidationError as exc:
            raise ApiError(400, "invalid_request", _validation_message(exc)) from None
        except (UnicodeError, RecursionError, msgspec.DecodeError) as exc:
            raise undecodable(exc) from None
        title, text = clean_document(data.title, data.text, "source", services.settings)
        bound = services.settings.sources_max_stored
        row = await services.sources.create(owner=owner, title=title, text=text, max_stored=bound)
        if row is None:
            raise ApiError(
                409,
                "sources_full",
                f"this API token already stores {bound} sources (SOURCES_MAX_STORED); "
                "delete some with DELETE /sources/{sourceId} first",
            )
        created = SourceCreated(
            source_id=row.id, title=row.title, characters=row.characters, created_at=row.created_at
        )
        return Response(
            created, status_code=HTTP_201_CREATED, headers={"Location": f"/sources/{row.id}"}
        )

    @get(
        "/",
        summary="Uploaded source documents, newest first",
        description="Page with `limit` and the `nextCursor` of the previous page.",
        responses=docs.SOURCE_LIST_RESPONSES,
    )
    async def list_sources(
        self,
        request: Request[Any, Any, Any],
        services: NamedDependency[Services],
        limit: Annotated[int, QueryParameter(ge=1, le=100, description="Page size.")] = 20,
        cursor: Annotated[
            str | None, QueryParameter(description="`nextCursor` from the previous page.")
        ] = None,
    ) -> SourceList:
        rows = await services.sources.page(
            owner=caller(request),
            limit=limit + 1,
            before=None if cursor is None else decode_cursor(cursor),
        )
        page = rows[:limit]
        next_cursor = None
        if len(rows) > limit:
            next_cursor = encode_cursor(page[-1].created_at, page[-1].id)
        return SourceList(sources=[_summary(r) for r in page], next_cursor=next_cursor)

    @get(
        "/{source_id:str}",
        summary="One uploaded source document, with its text",
        responses=docs.SOURCE_GET_RESPONSES,
    )
    async def get_source(
        self,
        request: Request[Any, Any, Any],
        source_id: SourceIdParam,
        services: NamedDependency[Services],
    ) -> SourceDetail:
        found = await services.sources.get_many([_path_id(source_id)], caller(request))
        if not found:
            raise _not_found(source_id)
        (source,) = found.values()
        return SourceDetail(
            source_id=source.id,
            title=source.title,
            text=source.text,
            characters=len(source.text),
            created_at=source.created_at,
        )

    @delete(
        "/{source_id:str}",
        status_code=200,
        summary="Delete an uploaded source document",
        description="Reports already created with it keep their copy of its passages.",
        responses=docs.SOURCE_DELETE_RESPONSES,
    )
    async def delete_source(
        self,
        request: Request[Any, Any, Any],
        source_id: SourceIdParam,
        services: NamedDependency[Services],
    ) -> SourceDeleted:
        parsed = _path_id(source_id)
        if not await services.sources.delete(parsed, caller(request)):
            raise _not_found(source_id)
        return SourceDeleted(source_id=parsed, status="deleted")


def _path_id(raw: str) -> UUID:
    try:
        return UUID(raw)
    except ValueError:
        raise _not_found(raw) from None


def _not_found(raw: str) -> ApiError:
    return ApiError(404, "source_not_found", f"no source with id {raw!r}")


def _validation_message(exc: msgspec.ValidationError) -> str:
    message = str(exc).replace("`", "")
    if " - at $." in message:
        what, _, where = message.rpartition(" - at $.")
        message = f"{where}: {what}"
    return message
