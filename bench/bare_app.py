"""The baseline for the API benchmark: Litestar answering POST /reports with 202 and a
fresh id, with the same request Struct, server and settings as `reportsvc serve`, and no
database. Whatever our API costs beyond this is the price of writing the job durably.

    python -m bench.bare_app --port 8001
"""

from __future__ import annotations

import argparse
import uuid

import uvicorn
from litestar import Litestar, Response, post
from litestar.params import JSONBody
from litestar.status_codes import HTTP_202_ACCEPTED

from reportsvc.api.schemas import CreateReport, JobAccepted


@post("/reports", status_code=HTTP_202_ACCEPTED)
async def create_report(data: JSONBody[CreateReport]) -> Response[JobAccepted]:  # noqa: ARG001
    # `data` is decoded and validated exactly as in the real handler, then not stored.
    job_id = uuid.uuid4()
    return Response(
        JobAccepted(job_id=job_id),
        status_code=HTTP_202_ACCEPTED,
        headers={"Location": f"/reports/{job_id}"},
    )


app = Litestar(route_handlers=[create_report], logging_config=None)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        log_config=None,
        access_log=False,
        server_header=False,
    )


if __name__ == "__main__":
    main()
