#!/usr/bin/env node
/*
 * lint-dockerfile.js — offline lint of pgwork's Dockerfile (there is no
 * Docker engine to build it with).
 *
 *   node tests/deploy/lint-dockerfile.js [--context DIR] [--binary BIN] DOCKERFILE...
 *
 * 1. Syntax and semantics, with dockerfile-utils (the validator of the
 *    Dockerfile language server): unknown instructions and flags, missing or
 *    extra arguments, bad ports, durations, JSON forms, ... Warnings count
 *    as errors.
 * 2. Good practice, as hadolint would say it (its rule ids, for the
 *    reader): tagged base images, apt-get hygiene, JSON-form ENTRYPOINT, a
 *    non-root last USER, COPY not ADD, WORKDIR not cd, COPY --from an
 *    earlier stage. Each RUN goes through shellcheck when it is installed.
 *    Not enforced: DL3008 (pin apt package versions): a rebuild should pick
 *    up bookworm's security updates, and old pins vanish from the archive.
 * 3. pgwork's contract for its image (issue 5): a build stage on
 *    debian:bookworm, the runtime on debian:bookworm-slim with no -dev
 *    package, USER 10001 (numeric), PGWORK_CONFIG=/etc/pgwork/pgwork.conf,
 *    EXPOSE 9187, STOPSIGNAL SIGTERM, ENTRYPOINT ["pgwork", "run"] and no
 *    init wrapper (the supervisor is PID 1).
 * 4. --context DIR: .dockerignore is an allowlist ("*" then "!path" lines)
 *    and every path the build stage COPYs is in it.
 * 5. --binary BIN: every shared library BIN needs (readelf) comes from a
 *    package the runtime stage installs (dpkg -S on this Debian 12
 *    machine, the image's release), or from the slim base (libc6).
 *
 * Errors are "FILE:LINE: message", one per line, then "lint-dockerfile:
 * FILE: N errors"; the exit status is 1 if any file had one. Several files
 * are linted one by one in one process (the negative tests).
 */
"use strict";

const fs = require("fs");
const path = require("path");
const { spawnSync } = require("child_process");
const { validate } = require("dockerfile-utils");
const { DockerfileParser } = require("dockerfile-ast");

const errors = [];
let display = "Dockerfile";

function report(line, message) {
    errors.push(`${display}:${line}: ${message}`);
}

const lineOf = (ins) => ins.getRange().start.line + 1;
const args = (ins) => (ins.getArgumentsContent() || "").trim();

/* The packages and options of each `apt-get install` in a RUN. */
function aptInstalls(text) {
    const out = [];
    for (const cmd of text.split(/&&|\|\||;|\n/)) {
        const words = cmd.replace(/\\\s*$/gm, " ").trim().split(/\s+/);
        const i = words.indexOf("apt-get");
        if (i < 0 || !words.slice(i + 1).includes("install"))
            continue;
        const rest = words.slice(words.indexOf("install", i) + 1);
        out.push({
            options: words.slice(i + 1).filter((w) => w.startsWith("-")),
            packages: rest.filter((w) => w && !w.startsWith("-")),
        });
    }
    return out;
}

/* Split the instructions into stages, one per FROM. */
function stagesOf(df) {
    const stages = [];
    for (const ins of df.getInstructions()) {
        if (ins.getKeyword() === "FROM")
            stages.push({ from: ins, name: ins.getBuildStage(), instructions: [] });
        else if (stages.length > 0)
            stages[stages.length - 1].instructions.push(ins);
    }
    return stages;
}

const SIGNALS = ["SIGABRT", "SIGALRM", "SIGBUS", "SIGCHLD", "SIGCONT", "SIGFPE", "SIGHUP", "SIGILL",
                 "SIGINT", "SIGKILL", "SIGPIPE", "SIGPROF", "SIGPWR", "SIGQUIT", "SIGSEGV", "SIGSTOP",
                 "SIGSYS", "SIGTERM", "SIGTRAP", "SIGTSTP", "SIGTTIN", "SIGTTOU", "SIGURG", "SIGUSR1",
                 "SIGUSR2", "SIGVTALRM", "SIGWINCH", "SIGXCPU", "SIGXFSZ"];

function shellcheckAvailable() {
    const r = spawnSync("shellcheck", ["--version"], { encoding: "utf8" });
    return r.status === 0;
}

function goodPractice(stages, useShellcheck) {
    const names = new Set();
    stages.forEach((st, si) => {
        const image = st.from.getImage() || "";
        const tag = st.from.getImageTag();
        const digest = st.from.getImageDigest();
        if (!names.has(st.from.getImageName()) && !digest) {
            if (!tag)
                report(lineOf(st.from), `DL3006: tag the base image explicitly (${image})`);
            else if (tag === "latest")
                report(lineOf(st.from), `DL3007: do not build on :latest (${image})`);
        }
        if (si < stages.length - 1 && !st.name)
            report(lineOf(st.from), "name every build stage (FROM ... AS NAME), for COPY --from");
        for (const ins of st.instructions) {
            const kw = ins.getKeyword();
            const text = args(ins);
            if (kw === "ADD")
                report(lineOf(ins), "DL3020: use COPY for files and directories, not ADD");
            if ((kw === "ENTRYPOINT" || kw === "CMD") && !text.startsWith("["))
                report(lineOf(ins), `DL3025: use the JSON (exec) form for ${kw}: a shell would be PID 1`);
            if (kw === "COPY") {
                const flag = ins.getFromFlag && ins.getFromFlag();
                const from = flag && flag.getValue();
                const index = /^\d+$/.test(from || "") && Number(from) < si;
                if (from !== null && from !== undefined && !names.has(from) && !index && !/[:@]/.test(from))
                    report(lineOf(ins), `DL3022: COPY --from=${from}: no earlier stage of that name`);
            }
            if (kw === "WORKDIR" && !text.startsWith("/") && !text.startsWith("$"))
                report(lineOf(ins), "DL3000: WORKDIR must be absolute");
            if (kw !== "RUN")
                continue;
            if (/(^|[;&|(]\s*)cd\s/.test(text))
                report(lineOf(ins), "DL3003: use WORKDIR to change directory, not cd");
            if (/(^|[;&|]\s*)sudo\s/.test(text))
                report(lineOf(ins), "DL3004: do not use sudo: the build runs as root");
            if (/\bapt-get\s+(-\S+\s+)*(upgrade|dist-upgrade)\b/.test(text))
                report(lineOf(ins), "DL3005: do not apt-get upgrade: rebuild on a newer base image");
            if (/(^|[;&|]\s*)apt\s/.test(text))
                report(lineOf(ins), "DL3027: use apt-get, not apt (no stable CLI)");
            const installs = aptInstalls(text);
            for (const inst of installs) {
                if (!inst.options.some((o) => o === "-y" || o === "--yes" || o === "-qy" || o === "-yq"))
                    report(lineOf(ins), "DL3014: apt-get install needs -y (no one answers the prompt)");
                if (!inst.options.includes("--no-install-recommends"))
                    report(lineOf(ins), "DL3015: apt-get install --no-install-recommends (no unasked-for packages)");
            }
            if (installs.length > 0 && !/\bapt-get\s+(-\S+\s+)*update\b/.test(text))
                report(lineOf(ins), "DL3009: apt-get update in the same RUN as install (a cached stale index)");
            if (installs.length > 0 && !/rm\s+-[a-z]*r[a-z]*f?[a-z]*\s+\/var\/lib\/apt\/lists/.test(text))
                report(lineOf(ins), "DL3009: remove /var/lib/apt/lists/* in the RUN that installs");
            if (useShellcheck && !text.startsWith("[")) {
                const r = spawnSync("shellcheck", ["--shell=sh", "--format=gcc", "--exclude=SC2154", "-"],
                                    { input: ins.getRawArgumentsContent() + "\n", encoding: "utf8" });
                for (const l of (r.stdout || "").split("\n").filter(Boolean)) {
                    const m = /^-:(\d+):\d+: (.*)$/.exec(l);
                    report(m ? lineOf(ins) + Number(m[1]) - 1 : lineOf(ins), `shellcheck: ${m ? m[2] : l}`);
                }
            }
        }
        if (st.name)
            names.add(st.name);
    });
}

function contract(stages) {
    if (stages.length < 2) {
        report(1, "multi-stage: a build stage and a runtime stage");
        return;
    }
    const build = stages[0];
    const run = stages[stages.length - 1];
    if (build.from.getImage() !== "debian:bookworm")
        report(lineOf(build.from), "the build stage is FROM debian:bookworm (the release the tests run on)");
    if (run.from.getImage() !== "debian:bookworm-slim")
        report(lineOf(run.from), "the runtime stage is FROM debian:bookworm-slim");

    const last = (kw) => run.instructions.filter((i) => i.getKeyword() === kw).pop();

    for (const ins of run.instructions.filter((i) => i.getKeyword() === "RUN")) {
        for (const inst of aptInstalls(args(ins))) {
            for (const p of inst.packages)
                if (/-dev$|^build-essential$|^gcc|^g\+\+|^make$|^pkg-config$/.test(p))
                    report(lineOf(ins), `the runtime stage installs runtime libraries only, not ${p}`);
        }
    }

    const user = last("USER");
    if (!user)
        report(lineOf(run.from), "DL3002: the runtime stage needs a USER (it would run as root)");
    else if (!/^[1-9][0-9]*(:[0-9]+)?$/.test(args(user)))
        report(lineOf(user), `USER ${args(user)}: a numeric non-root UID (runAsNonRoot can only verify numbers)`);
    else if (!/^10001(:10001)?$/.test(args(user)))
        report(lineOf(user), "USER 10001: the UID the Kubernetes manifests run as");

    const entry = last("ENTRYPOINT");
    if (!entry) {
        report(lineOf(run.from), 'ENTRYPOINT ["pgwork", "run"]');
    } else {
        let argv = null;
        try {
            argv = JSON.parse(args(entry));
        } catch (e) {
            /* not JSON: reported as DL3025 */
        }
        if (argv && JSON.stringify(argv) !== '["pgwork","run"]')
            report(lineOf(entry), `ENTRYPOINT ["pgwork", "run"], not ${args(entry)}: the supervisor must be PID 1`);
    }
    for (const ins of run.instructions)
        if (/\b(tini|dumb-init|s6-svscan|supervisord)\b/.test(args(ins)) && ins.getKeyword() !== "LABEL")
            report(lineOf(ins), "no init wrapper: pgwork is PID 1 and reaps its children itself");
    const cmd = last("CMD");
    if (cmd)
        report(lineOf(cmd), "no CMD: its words would become arguments of `pgwork run`");

    const stop = last("STOPSIGNAL");
    if (!stop || args(stop) !== "SIGTERM")
        report(stop ? lineOf(stop) : lineOf(run.from), "STOPSIGNAL SIGTERM (graceful drain)");
    for (const st of stages)
        for (const ins of st.instructions.filter((i) => i.getKeyword() === "STOPSIGNAL"))
            if (!/^\d+$/.test(args(ins)) && !SIGNALS.includes(args(ins).toUpperCase()) &&
                !SIGNALS.includes("SIG" + args(ins).toUpperCase()))
                report(lineOf(ins), `STOPSIGNAL ${args(ins)}: not a signal`);

    const exposed = [];
    for (const ins of run.instructions.filter((i) => i.getKeyword() === "EXPOSE")) {
        for (const a of ins.getArguments()) {
            const m = /^(\d+)(\/(tcp|udp|sctp))?$/.exec(a.getValue());
            if (!m || Number(m[1]) < 1 || Number(m[1]) > 65535)
                report(lineOf(ins), `EXPOSE ${a.getValue()}: not a port (1-65535)`);
            else
                exposed.push(Number(m[1]));
        }
    }
    if (!exposed.includes(9187))
        report(lineOf(run.from), "EXPOSE 9187 (http.listen: /healthz, /readyz, /metrics)");

    const envText = run.instructions.filter((i) => i.getKeyword() === "ENV").map(args).join("\n");
    if (!/(^|\s)PGWORK_CONFIG=\/etc\/pgwork\/pgwork\.conf(\s|$)/.test(envText))
        report(lineOf(run.from), "ENV PGWORK_CONFIG=/etc/pgwork/pgwork.conf");

    const copies = run.instructions.filter((i) => i.getKeyword() === "COPY" && /\/usr\/local\/bin\/pgwork$/.test(args(i)));
    if (copies.length === 0)
        report(lineOf(run.from), "COPY the binary to /usr/local/bin/pgwork (on PATH, for the ENTRYPOINT)");
    return run;
}

/* --context: .dockerignore is an allowlist that holds what the build COPYs. */
function contextCheck(dir, stages) {
    const ignore = path.join(dir, ".dockerignore");
    if (!fs.existsSync(ignore)) {
        report(1, `${ignore}: missing (the whole directory, .git and build/ included, would be sent)`);
        return;
    }
    const lines = fs.readFileSync(ignore, "utf8").split("\n").map((l) => l.trim())
        .filter((l) => l && !l.startsWith("#"));
    if (lines[0] !== "*" || lines.slice(1).some((l) => !l.startsWith("!")))
        errors.push(`${ignore}: an allowlist: "*" first, then only "!path" lines`);
    const allowed = lines.slice(1).map((l) => l.slice(1).replace(/\/+$/, ""));
    for (const a of allowed)
        if (!fs.existsSync(path.join(dir, a)))
            errors.push(`${ignore}: !${a}: no such file or directory`);
    const inContext = (p) => allowed.some((a) => p === a || p.startsWith(a + "/") || a.startsWith(p === "." ? "" : p + "/"));
    for (const st of stages.slice(0, -1)) {
        for (const ins of st.instructions.filter((i) => i.getKeyword() === "COPY" || i.getKeyword() === "ADD")) {
            if (ins.getFromFlag && ins.getFromFlag())
                continue;
            const words = ins.getArguments().map((a) => a.getValue()).filter((w) => !w.startsWith("--"));
            for (const src of words.slice(0, -1)) {
                const p = path.normalize(src).replace(/\/+$/, "");
                if (p !== "." && !inContext(p))
                    report(lineOf(ins), `COPY ${src}: left out of the build context by .dockerignore`);
            }
        }
    }
}

/* --binary: the runtime stage provides every library the binary needs. */
function binaryCheck(bin, run) {
    const r = spawnSync("readelf", ["-d", bin], { encoding: "utf8" });
    if (r.status !== 0) {
        errors.push(`${bin}: readelf -d failed: ${(r.stderr || "").trim()}`);
        return;
    }
    const needed = [...r.stdout.matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) => m[1]);
    const installed = new Set(["libc6", "libgcc-s1"]); /* in debian:bookworm-slim */
    for (const ins of run.instructions.filter((i) => i.getKeyword() === "RUN"))
        for (const inst of aptInstalls(args(ins)))
            inst.packages.forEach((p) => installed.add(p));
    for (const lib of needed) {
        const q = spawnSync("dpkg", ["-S", `*/${lib}`], { encoding: "utf8" });
        const pkgs = [...new Set((q.stdout || "").split("\n").filter(Boolean)
            .map((l) => l.split(":")[0].split(",")[0].trim()))];
        if (pkgs.length === 0) {
            errors.push(`${bin}: needs ${lib}, which no Debian package here provides`);
            continue;
        }
        if (!pkgs.some((p) => installed.has(p)))
            report(lineOf(run.from), `the runtime stage does not install ${pkgs.join(" or ")}, ` +
                   `which provides ${lib} (needed by ${path.basename(bin)})`);
    }
    return needed;
}

/* Lints one Dockerfile; prints its errors; returns their number. */
function lintFile(file, context, binary, shellcheck) {
    errors.length = 0;
    display = path.relative(process.cwd(), path.resolve(file)) || file;
    const content = fs.readFileSync(file, "utf8");

    for (const d of validate(content))
        report(d.range.start.line + 1, `${d.severity === 1 ? "error" : "warning"}: ${d.message}`);
    const stages = stagesOf(DockerfileParser.parse(content));
    goodPractice(stages, shellcheck);
    const run = contract(stages);
    if (context)
        contextCheck(context, stages);
    let needed = null;
    if (binary && run)
        needed = binaryCheck(binary, run);

    for (const e of errors)
        console.error(e);
    if (errors.length > 0) {
        console.error(`lint-dockerfile: ${display}: ${errors.length} error${errors.length === 1 ? "" : "s"}`);
        return errors.length;
    }
    console.log(`lint-dockerfile: ${display}: ${stages.length} stages ok` +
                (shellcheck ? ", RUNs shellchecked" : " (shellcheck not installed: RUNs not shellchecked)") +
                (context ? ", build context ok" : "") +
                (needed ? `, runtime stage provides ${needed.join(" ")}` : ""));
    return 0;
}

/* Several files in one run (the negative tests): each is linted on its own. */
function main(argv) {
    let context = null;
    let binary = null;
    const files = [];
    for (let i = 0; i < argv.length; i++) {
        if (argv[i] === "--context")
            context = argv[++i];
        else if (argv[i] === "--binary")
            binary = argv[++i];
        else
            files.push(argv[i]);
    }
    if (files.length === 0 || (argv.includes("--context") && !context) || (argv.includes("--binary") && !binary)) {
        console.error("usage: node lint-dockerfile.js [--context DIR] [--binary BIN] DOCKERFILE [DOCKERFILE...]");
        return 2;
    }
    const shellcheck = shellcheckAvailable();
    let bad = 0;
    for (const f of files)
        if (lintFile(f, context, binary, shellcheck) > 0)
            bad++;
    return bad > 0 ? 1 : 0;
}

process.exitCode = main(process.argv.slice(2));
