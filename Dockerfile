# reportsvc: one image for the API, the workers and the migrate step.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml constraints.txt README.md LICENSE alembic.ini ./
COPY src ./src
COPY migrations ./migrations
RUN pip install -c constraints.txt . \
    && useradd --system --uid 10001 --home /app reportsvc

USER reportsvc
EXPOSE 8000
CMD ["reportsvc", "serve", "--host", "0.0.0.0", "--port", "8000"]
