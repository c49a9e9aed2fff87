#!/bin/sh
# run.sh — the deployment checks of `make test` (tests/run.sh calls it).
#
#   sh tests/deploy/run.sh BUILD_DIR
#
# There is no Docker engine and no cluster here, so everything is offline:
#
# 1. npm ci of the checkers (package-lock.json) into tests/deploy/node_modules,
#    skipped while the lockfile is unchanged.
# 2. Dockerfile: lint-dockerfile.js (dockerfile-utils, hadolint-style rules,
#    RUNs through shellcheck, pgwork's image contract, the build context);
#    `make` on a copy of exactly the build context, and the runtime stage
#    must install every library that binary needs; then broken copies of
#    the Dockerfile, each of which the lint must reject with the expected
#    message.
# 3. deploy/kubernetes: validate-k8s.js (Kubernetes API schemas, strict
#    unknown-field check, kustomize lists and rendering, pgwork's rules);
#    `pgwork check-config` on the ConfigMap's pgwork.conf; then broken
#    copies of the tree (a misspelt livenessProbe, a wrong type, ...), each
#    of which must be rejected.
# 4. The binary run the way the image runs it: PID 1 of a new PID namespace,
#    UID/GID 10001 with no capabilities and no_new_privs, a read-only root
#    filesystem, a read-only config file (the ConfigMap's, with a test
#    handler and a free loopback port), PGWORK_DATABASE_URL. It must serve
#    the probes (/healthz, /readyz 200) and process a task; the preStop
#    hook's `kill -TSTP 1`, run inside, must turn /readyz to 503 and stop
#    claims; SIGTERM must end it with status 0; every log line is JSON. Needs root (unshare, setpriv) and the PostgreSQL that
#    tests/run.sh starts (PGHOST...); skipped, and said so, without them.
#
# The last line is "deploy: N passed, N failed, N skipped"; the exit status
# is non-zero if anything failed.
set -u

if [ $# -ne 1 ]; then
    echo "usage: sh tests/deploy/run.sh BUILD_DIR" >&2
    exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=$(cd "$1" && pwd) || exit 2
bin="$build/pgwork"
cd "$root" || exit 2

passed=0
failed=0
skipped=0
pass() {
    passed=$((passed + 1))
    echo "ok: $*"
}
fail() {
    failed=$((failed + 1))
    echo "FAIL: $*"
}
skip() {
    skipped=$((skipped + 1))
    echo "skip: $*"
}
finish() {
    echo "deploy: $passed passed, $failed failed, $skipped skipped"
    [ "$failed" -eq 0 ]
    exit $?
}

tmp=$(mktemp -d "${PGWORK_TEST_TMPDIR:-${TMPDIR:-/tmp}}/deploy.XXXXXX") || exit 1
# The PID-1 test runs as UID 10001, which must reach its files here.
chmod 755 "$tmp"
sup=""
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
    [ -n "$sup" ] && kill -KILL "$sup" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- 1. the checkers ---------------------------------------------------------
install_checkers() {
    if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
        echo "deploy: node and npm are needed (sh scripts/deps.sh installs them)" >&2
        return 1
    fi
    stamp="$here/node_modules/.pgwork-lock"
    want=$(cat "$here/package-lock.json" "$here/package.json" | cksum)
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        return 0
    fi
    echo "deploy: npm ci (tests/deploy/package-lock.json)"
    # No install scripts: nothing here needs one, and none may download.
    (cd "$here" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error) || return 1
    echo "$want" >"$stamp"
}
if ! install_checkers; then
    fail "npm ci in tests/deploy"
    finish
fi
node=node

# expect_fail NAME PATTERN CMD...: CMD must fail, printing PATTERN (grep -E).
expect_fail() {
    name=$1
    pattern=$2
    shift 2
    if out=$("$@" 2>&1); then
        fail "$name: accepted (the check cannot fail?)"
        printf '%s\n' "$out" | sed 's/^/    /'
    elif printf '%s\n' "$out" | grep -Eq -- "$pattern"; then
        pass "$name: rejected"
    else
        fail "$name: rejected, but without /$pattern/:"
        printf '%s\n' "$out" | sed 's/^/    /'
    fi
}

# The negative tests run in one checker process per kind (node starts are
# the slow part): each case is a broken copy in its own directory, named
# by KEY; the checker reports "...KEY: N errors" for it and its error lines
# carry KEY. add_case KIND NAME PATTERN KEY; check_cases KIND LABEL OUTPUT.
tab=$(printf '\t')
add_case() {
    printf '%s\t%s\t%s\n' "$2" "$3" "$4" >>"$tmp/$1.cases"
}
check_cases() {
    while IFS=$tab read -r name pattern key; do
        if ! grep -Eq -- "$key: [0-9]+ errors?\$" "$3"; then
            fail "$2, $name: accepted (the check cannot fail?)"
        elif grep -F -- "$key" "$3" | grep -Eq -- "$pattern"; then
            pass "$2, $name: rejected"
        else
            fail "$2, $name: rejected, but without /$pattern/:"
            grep -F -- "$key" "$3" | sed 's/^/    /'
        fi
    done <"$tmp/$1.cases"
}

# --- 2. the Dockerfile -------------------------------------------------------
echo "==> Dockerfile"
if $node "$here/lint-dockerfile.js" --context "$root" Dockerfile; then
    pass "Dockerfile lint"
else
    fail "Dockerfile lint"
fi

# The build stage's `COPY . .` + `make`, on exactly what .dockerignore lets
# in; the runtime stage must then provide every library that binary needs
# (not BUILD_DIR's, which may be a sanitizer build).
ctx="$tmp/context"
img_bin="$ctx/build/pgwork"
mkdir -p "$ctx"
ok=true
while read -r line; do
    case "$line" in
    "!"*) p=${line#!} ;;
    *) continue ;;
    esac
    p=${p%/}
    mkdir -p "$ctx/$(dirname "$p")" && cp -R "$p" "$ctx/$p" || ok=false
done <.dockerignore
if $ok && make -C "$ctx" -s -j"$(nproc 2>/dev/null || echo 2)" build/pgwork BUILD=build SANITIZE= \
    >"$tmp/context.log" 2>&1 && [ -x "$ctx/build/pgwork" ]; then
    pass "image build context: make builds pgwork from the .dockerignore allowlist alone"
    if $node "$here/lint-dockerfile.js" --binary "$img_bin" Dockerfile; then
        pass "runtime stage: installs every library the image's binary needs"
    else
        fail "runtime stage: installs every library the image's binary needs"
    fi
else
    tail -n 20 "$tmp/context.log"
    fail "image build context: make failed on the .dockerignore allowlist (a path missing from it?)"
fi

# mutate_dockerfile NAME PATTERN SED-SCRIPT: the lint must reject the change.
n=0
mutate_dockerfile() {
    n=$((n + 1))
    mkdir -p "$tmp/docker/m$n"
    sed "$3" Dockerfile >"$tmp/docker/m$n/Dockerfile"
    if cmp -s Dockerfile "$tmp/docker/m$n/Dockerfile"; then
        fail "Dockerfile, $1: the mutation did not apply (Dockerfile changed? update tests/deploy/run.sh)"
        return
    fi
    add_case docker "$1" "$2" "/m$n/Dockerfile"
}
: >"$tmp/docker.cases"
mutate_dockerfile "misspelt instruction" "Unknown instruction: ENTRYPIONT" 's/^ENTRYPOINT/ENTRYPIONT/'
mutate_dockerfile "unknown flag" "Unknown flag: form" 's/COPY --from=build/COPY --form=build/'
mutate_dockerfile "COPY from a missing stage" "DL3022" 's/COPY --from=build/COPY --from=bulid/'
mutate_dockerfile "root user" "numeric non-root UID" 's/^USER 10001:10001/USER root/'
mutate_dockerfile "shell-form entrypoint" "DL3025" 's/^ENTRYPOINT .*/ENTRYPOINT pgwork run/'
mutate_dockerfile "init wrapper" "no init wrapper" 's/^ENTRYPOINT .*/ENTRYPOINT ["tini", "--", "pgwork", "run"]/'
mutate_dockerfile "recommends" "DL3015" '0,/--no-install-recommends/s/ --no-install-recommends//'
mutate_dockerfile "port out of range" "not a port" 's/^EXPOSE 9187/EXPOSE 91870/'
mutate_dockerfile "stop signal" "STOPSIGNAL SIGTERM" 's/^STOPSIGNAL SIGTERM/STOPSIGNAL SIGKILL/'
mutate_dockerfile "missing runtime library" "does not install libpq5" '/^        libpq5 \\$/d'
mutate_dockerfile "-dev package at runtime" "runtime libraries only" 's/^        ca-certificates \\$/        ca-certificates libpq-dev \\/'
mutate_dockerfile "untagged base image" "DL3006" 's/^FROM debian:bookworm AS build/FROM debian AS build/'
# shellcheck disable=SC2016 # $(nproc) is Dockerfile text
mutate_dockerfile "shellcheck" "shellcheck: .*SC2046" 's/make -j"$(nproc)"/make -j$(nproc)/'
# shellcheck disable=SC2046 # one path per case, no spaces
$node "$here/lint-dockerfile.js" --binary "$img_bin" $(cut -f3 "$tmp/docker.cases" | sed "s|^|$tmp/docker|") \
    >"$tmp/docker.out" 2>&1
check_cases docker Dockerfile "$tmp/docker.out"

# --- 3. deploy/kubernetes ------------------------------------------------------
echo "==> deploy/kubernetes"
conf="$tmp/pgwork.conf"
if $node "$here/validate-k8s.js" --extract-config "$conf" deploy/kubernetes; then
    pass "kubernetes manifests"
else
    fail "kubernetes manifests"
fi
if [ -s "$conf" ] && out=$("$bin" -c "$conf" check-config 2>&1); then
    pass "pgwork check-config on the ConfigMap's pgwork.conf: $out"
else
    fail "pgwork check-config on the ConfigMap's pgwork.conf:"
    printf '%s\n' "${out:-no pgwork.conf extracted}" | sed 's/^/    /'
fi

# mutate_k8s NAME PATTERN FILE SED-SCRIPT: a copy of the tree with FILE
# changed must be rejected.
n=0
mutate_k8s() {
    n=$((n + 1))
    t="$tmp/k8s/k$n.case"
    mkdir -p "$tmp/k8s" && cp -R deploy/kubernetes "$t"
    [ -n "$4" ] && sed "$4" "deploy/kubernetes/$3" >"$t/$3"
    if [ -n "$4" ] && cmp -s "deploy/kubernetes/$3" "$t/$3"; then
        fail "kubernetes, $1: the mutation did not apply ($3 changed? update tests/deploy/run.sh)"
        return
    fi
    add_case k8s "$1" "$2" "/k$n.case"
}
: >"$tmp/k8s.cases"
mutate_k8s "misspelt field" 'livenesProbe.*unknown field "livenesProbe"' deployment.yaml 's/livenessProbe:/livenesProbe:/'
mutate_k8s "wrong type" 'spec\.replicas: schema: must be integer' deployment.yaml 's/^  replicas: 2$/  replicas: two/'
mutate_k8s "wrong type in a list" 'containerPort: schema: must be integer' deployment.yaml 's/containerPort: 9187/containerPort: "9187"/'
mutate_k8s "bad enum value" 'must be equal to one of the allowed values' deployment.yaml 's/imagePullPolicy: IfNotPresent/imagePullPolicy: Allways/'
mutate_k8s "misspelt KEDA field" 'unknown field "scaleTargetRf"' keda/scaledobject.yaml 's/scaleTargetRef:/scaleTargetRf:/'
mutate_k8s "wrong KEDA type" 'minReplicaCount: schema: must be integer' keda/scaledobject.yaml 's/minReplicaCount: 1/minReplicaCount: "1"/'
mutate_k8s "misspelt kustomize field" 'unknown field "resouces"' kustomization.yaml 's/^resources:/resouces:/'
mutate_k8s "unknown kind" 'no schema for apiVersion' service.yaml 's/^kind: Service/kind: Servce/'
mutate_k8s "listed file missing" 'servic\.yaml: no such file' kustomization.yaml 's/- service.yaml/- servic.yaml/'
mutate_k8s "grace period below the drain" 'would be SIGKILLed' deployment.yaml 's/terminationGracePeriodSeconds: 40/terminationGracePeriodSeconds: 20/'
mutate_k8s "shutdown_timeout above the grace period" 'workers\.shutdown_timeout \(60 s\).*would be SIGKILLed' configmap.yaml 's/shutdown_timeout = 25s/shutdown_timeout = 1m/'
mutate_k8s "secret in the base" 'ships no secret' kustomization.yaml 's/^  - service.yaml$/  - service.yaml\n  - secret.example.yaml/'
mutate_k8s "web: no replica" 'pgwork web: replicas: a whole number >= 1' web/deployment.yaml 's/^  replicas: 2$/  replicas: 0/'
mutate_k8s "web: token as a literal" 'PGWORK_WEB_TOKEN from a Secret' web/deployment.yaml '/name: PGWORK_WEB_TOKEN/{n;s/.*/              value: not-a-secret/;n;N;N;d}'
mutate_k8s "web: probe on the wrong port" 'livenessProbe: httpGet /healthz on its port' web/deployment.yaml '0,/port: http-web/{/port: http-web/s//port: 9187/}'
mutate_k8s "unlisted manifest" 'extra\.yaml: not listed' service.yaml ''
cp deploy/kubernetes/service.yaml "$tmp/k8s/k$n.case/extra.yaml"
# shellcheck disable=SC2046 # one path per case, no spaces
$node "$here/validate-k8s.js" --no-render $(cut -f3 "$tmp/k8s.cases" | sed "s|^|$tmp/k8s|") \
    >"$tmp/k8s.out" 2>&1
check_cases k8s kubernetes "$tmp/k8s.out"

# The same file with a bad value: check-config must say where.
sed 's/^    count = 4$/    count = four/' "$conf" >"$tmp/bad.conf"
if [ -s "$conf" ] && ! cmp -s "$conf" "$tmp/bad.conf"; then
    expect_fail "pgwork.conf, bad value" 'bad\.conf:[0-9]+: workers\.count' "$bin" -c "$tmp/bad.conf" check-config
else
    fail "pgwork.conf, bad value: the mutation did not apply (configmap.yaml changed?)"
fi

# --- 4. the binary as the image runs it ---------------------------------------
echo "==> PID 1 as in the image"
pid1_test() {
    uid=10001
    work="$tmp/pid1"
    mkdir -p "$work/bin" "$work/etc" "$work/pgsocket"
    cp "$bin" "$work/bin/pgwork" && chmod 755 "$work/bin/pgwork"

    # The ConfigMap's file, with a handler that exists here and a free port.
    port=$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
    sed -e 's|command = {"/app/handle"}|command = {"/bin/sh", "-c", "cat >/dev/null"}|' \
        -e "s|listen = \"0.0.0.0:9187\"|listen = \"127.0.0.1:$port\"|" \
        -e 's|shutdown_timeout = 25s|shutdown_timeout = 5s|' "$conf" >"$work/etc/pgwork.conf"
    if ! grep -q 'cat >/dev/null' "$work/etc/pgwork.conf" || ! grep -q "127.0.0.1:$port" "$work/etc/pgwork.conf"; then
        fail "PID 1: could not adapt the ConfigMap's pgwork.conf (its queue or http.listen changed?)"
        return
    fi
    chmod 444 "$work/etc/pgwork.conf"
    chmod 555 "$work/etc"

    # A database of its own, migrated.
    db=pgwork_deploy_test
    psql_bin=$(pg_config --bindir 2>/dev/null || echo /usr/lib/postgresql/15/bin)/psql
    [ -x "$psql_bin" ] || psql_bin=psql
    PGOPTIONS="-c client_min_messages=warning" "$psql_bin" -X -q -d postgres \
        -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null || {
        fail "PID 1: could not create database $db"
        return
    }
    sql() { "$psql_bin" -X -q -At -d "$db" -c "$1"; }
    outside_url="postgresql:///$db?host=$PGHOST&port=$PGPORT&user=$PGUSER"
    # A socket directory is bind-mounted inside (below); a TCP host is used as is.
    sockdir=""
    inside_host=$PGHOST
    if [ -d "$PGHOST" ]; then
        sockdir=$PGHOST
        inside_host="$work/pgsocket"
    fi
    inside_url="postgresql:///$db?host=$inside_host&port=$PGPORT&user=$PGUSER"
    if ! PGWORK_DATABASE_URL=$outside_url "$bin" migrate >"$tmp/migrate.log" 2>&1; then
        cat "$tmp/migrate.log"
        fail "PID 1: pgwork migrate"
        return
    fi

    # Inside: the socket directory bind-mounted where UID 10001 can reach it
    # (PGHOST may sit under a directory only postgres can enter), / remounted
    # read-only (readOnlyRootFilesystem), then setpriv drops to 10001 with no
    # capabilities (drop: [ALL]) and no_new_privs (allowPrivilegeEscalation:
    # false), and execs pgwork: PID 1 all along.
    sanitizer_env=""
    [ -n "${ASAN_OPTIONS:-}" ] && sanitizer_env="ASAN_OPTIONS=$ASAN_OPTIONS"
    [ -n "${UBSAN_OPTIONS:-}" ] && sanitizer_env="$sanitizer_env UBSAN_OPTIONS=$UBSAN_OPTIONS"
    # shellcheck disable=SC2016 # $1.. belong to the inner shell
    unshare --pid --fork --mount-proc --kill-child sh -c '
        if [ -n "$1" ]; then mount --bind "$1" "$2" || exit 97; fi
        mount -o remount,bind,ro / || exit 98
        exec setpriv --reuid="$3" --regid="$3" --clear-groups --no-new-privs \
            --inh-caps=-all --bounding-set=-all \
            env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/nonexistent \
            PGWORK_CONFIG="$4" PGWORK_DATABASE_URL="$5" $6 "$7" run
    ' sh "$sockdir" "$work/pgsocket" "$uid" "$work/etc/pgwork.conf" "$inside_url" \
        "$sanitizer_env" "$work/bin/pgwork" >"$work/pgwork.log" 2>&1 &
    sup=$!

    # Its host PID: the child of unshare.
    inner=""
    i=0
    while [ -z "$inner" ] && [ $i -lt 50 ]; do
        inner=$(awk '{print $1}' "/proc/$sup/task/$sup/children" 2>/dev/null)
        [ -n "$inner" ] || sleep 0.1
        i=$((i + 1))
    done
    if [ -z "$inner" ] || ! kill -0 "$inner" 2>/dev/null; then
        wait "$sup"
        echo "    exit status $?; its log:"
        sed 's/^/    /' "$work/pgwork.log"
        fail "PID 1: did not start"
        sup=""
        return
    fi
    i=0
    while [ $i -lt 50 ] && ! grep -q "^Uid:[[:space:]]*${uid}[[:space:]]" "/proc/$inner/status" 2>/dev/null; do
        sleep 0.1
        i=$((i + 1))
    done
    nspid=$(awk '/^NSpid:/ {print $NF}' "/proc/$inner/status")
    caps=$(awk '/^CapEff:/ {print $2}' "/proc/$inner/status")
    nnp=$(awk '/^NoNewPrivs:/ {print $2}' "/proc/$inner/status")
    if [ "$nspid" = 1 ] && [ "$caps" = 0000000000000000 ] && [ "$nnp" = 1 ] &&
        grep -q "^Uid:[[:space:]]*${uid}[[:space:]]" "/proc/$inner/status"; then
        pass "PID 1: pgwork is PID 1 of its namespace, UID $uid, no capabilities, no_new_privs"
    else
        fail "PID 1: pid in namespace $nspid, CapEff $caps, NoNewPrivs $nnp, $(grep '^Uid:' "/proc/$inner/status")"
    fi

    # A task goes through.
    id=$(PGWORK_DATABASE_URL=$outside_url "$bin" enqueue default '{"deploy": 1}' 2>"$tmp/enqueue.log")
    state=""
    i=0
    while [ $i -lt 150 ]; do
        state=$(sql "SELECT state FROM pgwork.tasks WHERE id = ${id:-0}")
        [ "$state" = "done" ] && break
        kill -0 "$inner" 2>/dev/null || break
        sleep 0.1
        i=$((i + 1))
    done
    if [ "$state" = "done" ]; then
        pass "PID 1: task $id done (exec handler run as UID $uid, read-only root)"
    else
        fail "PID 1: task ${id:-?} is '${state}' after 15 s"
        cat "$tmp/enqueue.log"
    fi

    # KEDA's trigger query runs on the migrated schema and yields a number.
    query=$(cd "$here" && node -e '
        const YAML = require("yaml");
        const so = YAML.parse(require("fs").readFileSync(process.argv[1], "utf8"));
        console.log(so.spec.triggers.find((t) => t.type === "postgresql").metadata.query)' \
        "$root/deploy/kubernetes/keda/scaledobject.yaml" 2>&1)
    depth=$(sql "$query" 2>&1)
    case "$depth" in
    "" | *[!0-9]*) fail "PID 1: the KEDA trigger's query: $depth" ;;
    *) pass "PID 1: the KEDA trigger's query runs on the migrated schema (depth $depth)" ;;
    esac

    # HTTP: what the Deployment's probes ask.
    get() {
        node -e 'require("http").get({host: "127.0.0.1", port: process.argv[1], path: process.argv[2], timeout: 2000},
                   (r) => { console.log(r.statusCode); r.resume(); }).on("error", () => console.log("error"))' "$port" "$1"
    }
    health=$(get /healthz)
    ready=""
    i=0
    while [ $i -lt 50 ] && [ "$ready" != 200 ]; do
        ready=$(get /readyz)
        [ "$ready" = 200 ] || sleep 0.1
        i=$((i + 1))
    done
    if [ "$health" = 200 ] && [ "$ready" = 200 ]; then
        pass "PID 1: /healthz 200, /readyz 200"
    else
        fail "PID 1: /healthz $health, /readyz $ready"
    fi

    # The preStop hook: `kill -TSTP 1` from a shell inside, as the same user.
    nsenter --target "$inner" --pid --mount -- setpriv --reuid="$uid" --regid="$uid" --clear-groups \
        /bin/sh -c 'kill -TSTP 1'
    ready=""
    i=0
    while [ $i -lt 50 ] && [ "$ready" != 503 ]; do
        ready=$(get /readyz)
        [ "$ready" = 503 ] || sleep 0.1
        i=$((i + 1))
    done
    if [ "$ready" = 503 ]; then
        pass "PID 1: /readyz 503 after preStop's kill -TSTP 1"
    else
        fail "PID 1: /readyz $ready after kill -TSTP 1, not 503"
    fi
    id2=$(PGWORK_DATABASE_URL=$outside_url "$bin" enqueue default '{"deploy": 2}' 2>>"$tmp/enqueue.log")
    sleep 1.5
    state2=$(sql "SELECT state FROM pgwork.tasks WHERE id = ${id2:-0}")
    if [ "$state2" = pending ]; then
        pass "PID 1: quiet after kill -TSTP 1: task $id2 stays pending"
    else
        fail "PID 1: after kill -TSTP 1, task ${id2:-?} is '$state2', not pending"
    fi

    # SIGTERM, as the kubelet sends it: exit 0 within the drain.
    kill -TERM "$inner"
    i=0
    while [ $i -lt 150 ] && kill -0 "$inner" 2>/dev/null; do
        sleep 0.1
        i=$((i + 1))
    done
    if kill -0 "$inner" 2>/dev/null; then
        fail "PID 1: still running 15 s after SIGTERM"
        kill -KILL "$inner" 2>/dev/null
    fi
    wait "$sup"
    rc=$?
    sup=""
    if [ "$rc" -eq 0 ]; then
        pass "PID 1: SIGTERM -> exit 0"
    else
        fail "PID 1: SIGTERM -> exit $rc"
    fi

    # Every line it logged is one JSON object (log.format = "json").
    if [ ! -s "$work/pgwork.log" ]; then
        fail "PID 1: logged nothing"
    elif command -v jq >/dev/null 2>&1 && jq -e -s 'length > 0' "$work/pgwork.log" >/dev/null 2>&1 &&
        [ "$(jq -c . "$work/pgwork.log" | wc -l)" -eq "$(wc -l <"$work/pgwork.log")" ]; then
        pass "PID 1: $(wc -l <"$work/pgwork.log") log lines, each a JSON object"
    else
        fail "PID 1: log lines that are not JSON:"
        grep -v '^{.*}$' "$work/pgwork.log" | head -n 10 | sed 's/^/    /'
    fi
    if [ "$failed" -gt 0 ]; then
        echo "    pgwork's log:"
        tail -n 30 "$work/pgwork.log" | sed 's/^/    /'
    fi
    PGOPTIONS="-c client_min_messages=warning" "$psql_bin" -X -q -d postgres \
        -c "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1
}

if [ "$(id -u)" -ne 0 ]; then
    skip "PID 1 test: needs root (unshare, setpriv), as in CI"
elif [ -z "${PGHOST:-}" ] || [ -z "${PGPORT:-}" ]; then
    skip "PID 1 test: no PostgreSQL (run it through make test)"
elif [ ! -s "$conf" ]; then
    fail "PID 1 test: no pgwork.conf from the ConfigMap"
else
    pid1_test
fi

finish
