# The portal's image: web, worker, beat and migrate all run it (docker-compose.yml).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PORTAL_DATA_DIR=/data

WORKDIR /app
COPY pyproject.toml manage.py ./
COPY registry_portal ./registry_portal
COPY connected ./connected
COPY devtools ./devtools
COPY templates ./templates
COPY static ./static
# Editable: settings find templates/ and static/ beside manage.py (BASE_DIR).
RUN pip install -e . \
    && useradd --system --uid 1000 --home-dir /app portal \
    && mkdir -p /data && chown portal /data

USER portal
EXPOSE 8000
ENV GUNICORN_CMD_ARGS="--bind 0.0.0.0:8000"
CMD ["gunicorn", "registry_portal.wsgi", "--workers", "2", "--timeout", "60", "--access-logfile", "-"]
