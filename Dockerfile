# pgwork container image.
#
#   docker build -t pgwork:0.1.0 .
#   docker run --rm --stop-timeout 35 -e PGWORK_DATABASE_URL=postgres://... \
#       -v "$PWD/pgwork.conf:/etc/pgwork/pgwork.conf:ro" -p 9187:9187 pgwork:0.1.0
#
# Stopping: `docker stop` and `podman stop` send SIGTERM and wait only 10 s
# before SIGKILL, and an image cannot change that. Running tasks get
# workers.shutdown_timeout (25 s by default) to finish: a task still running
# at the SIGKILL is cut off mid-run and stays `running` until its lease
# expires (workers.lease, 5 min). Give the container more than
# shutdown_timeout: `--stop-timeout 35` on run (or `stop -t 35`, compose
# `stop_grace_period: 35s`); in Kubernetes, terminationGracePeriodSeconds
# above the preStop sleep plus shutdown_timeout (deploy/kubernetes: 40 s,
# which `make test` checks against the ConfigMap's shutdown_timeout).
#
# Two stages: `build` compiles build/pgwork on Debian 12 with the -dev
# packages; the runtime stage is bookworm-slim with only the shared libraries
# the binary links against, and the binary.
#
# The supervisor is PID 1 (no tini): it handles every signal it relies on and
# reaps orphans itself. It runs as the numeric, non-root UID 10001, so a
# Kubernetes `runAsNonRoot` check passes without a `runAsUser`. It needs no
# writable path: the image works with a read-only root filesystem.
#
# Config: /etc/pgwork/pgwork.conf (PGWORK_CONFIG). The image ships one with
# every key at its default (HTTP on 0.0.0.0:9187, JSON logs, no queue): mount
# your own over it. Without one, `pgwork run` exits 3 ("no queue
# configured") rather than idle as a healthy pod that runs nothing, and
# `pgwork check-config` says the same. The connection string comes from PGWORK_DATABASE_URL or
# libpq's PG* variables, never from the image.
#
# Other commands replace the entrypoint:
#   docker run --rm --entrypoint pgwork -e PGWORK_DATABASE_URL=... IMAGE migrate
# The dashboard is one of them (its own process; web.listen, a token):
#   docker run --rm --entrypoint pgwork -e PGWORK_DATABASE_URL=... \
#       -e PGWORK_WEB_TOKEN=... -p 9188:9188 IMAGE web   # with web.listen = "0.0.0.0:9188"
# The build stage runs npm (nodejs, npm) only to vendor the dashboard's
# chart library (web/assets/package-lock.json) into the binary.
#
# `make test` checks this file offline (tests/deploy/): a Dockerfile linter,
# the project's rules for it, that the build context holds what `make` needs,
# that the runtime stage installs every library the binary links against,
# and runs the binary the way this stage does.

FROM debian:bookworm AS build

RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        build-essential \
        libconfuse-dev \
        libmicrohttpd-dev \
        libpq-dev \
        libssl-dev \
        nodejs \
        npm \
        pkg-config \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
# .dockerignore lets in only what `make` needs.
COPY . .
RUN make -j"$(nproc)" build/pgwork \
    && install -D -m 0755 -s build/pgwork /out/pgwork


FROM debian:bookworm-slim

# Runtime libraries only: libpq (database), libconfuse (config),
# libmicrohttpd (/healthz, /readyz, /metrics), libcrypto (libssl3: the
# dashboard's signed session cookies), CA certificates for
# sslmode=verify-full; procps for /bin/kill, so operators can run
# `kubectl exec POD -- kill -TTIN 1`; tzdata for schedules' time zones
# (slim images lack /usr/share/zoneinfo). The user has a passwd entry so that
# libpq can name it.
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        ca-certificates \
        libconfuse2 \
        libmicrohttpd12 \
        libpq5 \
        libssl3 \
        procps \
        tzdata \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 pgwork \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin pgwork \
    && mkdir -p /etc/pgwork \
    && printf '%s\n' \
        '# pgwork.conf: every key at its default (HTTP on 0.0.0.0:9187,' \
        '# JSON logs) and no queue. Mount your own file over this one.' \
        > /etc/pgwork/pgwork.conf

COPY --from=build /out/pgwork /usr/local/bin/pgwork

ENV PGWORK_CONFIG=/etc/pgwork/pgwork.conf
USER 10001:10001
EXPOSE 9187
# TERM drains: running tasks finish (workers.shutdown_timeout), exit 0 —
# given a stop timeout above shutdown_timeout (see the top of this file).
STOPSIGNAL SIGTERM
ENTRYPOINT ["pgwork", "run"]
