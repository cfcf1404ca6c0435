# The PodRoute dashboard image; the same image runs the Celery worker (see compose.yaml).
# Build from the repository root:  docker build -f docker/dashboard.Dockerfile -t podroute-dashboard .

# htmx comes from the npm registry, pinned by dashboard/package-lock.json (no CDN at runtime)
FROM node:22.12-slim AS assets
WORKDIR /build/dashboard
COPY dashboard/package.json dashboard/package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DASHBOARD_HOST=0.0.0.0 \
    DASHBOARD_PORT=8080 \
    DASHBOARD_DATA_DIR=/data \
    DASHBOARD_PROJECT_DIR=/srv/podroute

RUN groupadd --system --gid 10001 podroute \
    && useradd --system --uid 10001 --gid podroute --home-dir /srv/podroute --shell /usr/sbin/nologin podroute \
    && mkdir -p /data \
    && chown podroute:podroute /data

WORKDIR /srv/podroute
COPY shared/ shared/
COPY dashboard/requirements.txt dashboard/requirements.txt
RUN pip install --no-cache-dir ./shared -r dashboard/requirements.txt
COPY alembic.ini pyproject.toml ./
COPY migrations/ migrations/
COPY services/ services/
COPY dashboard/ dashboard/
COPY --from=assets /build/dashboard/node_modules/ dashboard/node_modules/

USER 10001:10001
VOLUME ["/data"]
EXPOSE 8080
CMD ["python", "-m", "dashboard"]
