# pgwork container image.
#
#   docker build -t pgwork:0.1.0 .
#   docker run --rm -e PGWORK_DATABASE_URL=postgres://... \
#       -v "$PWD/pgwork.conf:/etc/pgwork/pgwork.conf:ro" -p 9187:9187 pgwork:0.1.0
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
# your own over it. The connection string comes from PGWORK_DATABASE_URL or
# libpq's PG* variables, never from the image.
#
# Other commands replace the entrypoint:
#   docker run --rm --entrypoint pgwork -e PGWORK_DATABASE_URL=... IMAGE migrate
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
        pkg-config \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
# .dockerignore lets in only what `make` needs.
COPY . .
RUN make -j"$(nproc)" build/pgwork \
    && install -D -m 0755 -s build/pgwork /out/pgwork


FROM debian:bookworm-slim

# Runtime libraries only: libpq (database), libconfuse (config),
# libmicrohttpd (/healthz, /readyz, /metrics), CA certificates for
# sslmode=verify-full; procps for /bin/kill, so operators can run
# `kubectl exec POD -- kill -TTIN 1`. The user has a passwd entry so that
# libpq can name it.
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        ca-certificates \
        libconfuse2 \
        libmicrohttpd12 \
        libpq5 \
        procps \
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
# TERM drains: running tasks finish (workers.shutdown_timeout), exit 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["pgwork", "run"]
