#!/usr/bin/env node
/*
 * validate-k8s.js — offline checks of a kustomize tree (deploy/kubernetes/).
 *
 *   node tests/deploy/validate-k8s.js [--no-render] [--extract-config FILE] DIR [DIR...]
 *
 * Nothing here touches a network or a cluster. In order:
 *
 * 1. YAML: every *.yaml / *.yml under DIR parses as Kubernetes reads it
 *    (YAML 1.1: `yes` is a boolean) and a duplicated key is an error.
 * 2. Schema: each document is validated against the JSON schema of its
 *    apiVersion/kind, compiled from the Kubernetes OpenAPI spec (npm
 *    kubernetes-models; KEDA's from its CRD, @kubernetes-models/keda):
 *    types, required fields, enum values, formats. A kind without a schema
 *    is an error, not a pass.
 * 3. Strict: the same documents are type-checked by the TypeScript compiler
 *    against the interfaces those packages generate from the same specs
 *    (kustomize's own: kustomize.d.ts). That rejects unknown fields — a
 *    misspelt `livenesProbe` — as `kubectl apply --validate=strict` does and
 *    the OpenAPI schema alone does not. Every object is checked on its own
 *    so that all errors are reported, not the first of each document.
 * 4. Kustomize: each kustomization lists files that exist; every manifest in
 *    its directory is listed, except *.example.yaml, which never is; no
 *    listed resource is a Secret. When kubectl (or kustomize) is installed,
 *    each kustomization, and each Component applied to the base, is rendered
 *    and the output goes through 2 and 3 as well (--no-render: skip).
 * 5. pgwork's rules (pgworkRules below): probes on /healthz and /readyz,
 *    the security context, the grace period above preStop + shutdown_timeout,
 *    the config mount, the Secret reference, selectors that match, ...
 *
 * Errors are "FILE:LINE: Kind/name: path: message", one per line, then
 * "validate-k8s: DIR: N errors"; the exit status is 1 if any DIR had one.
 * Several DIRs are checked one by one in one process (the negative tests).
 * --extract-config FILE writes the pgwork.conf of the ConfigMap that the
 * Deployment mounts to FILE (for `pgwork check-config`).
 */
"use strict";

const fs = require("fs");
const os = require("os");
const path = require("path");
const { spawnSync } = require("child_process");
const YAML = require("yaml");
const ts = require("typescript");

const HERE = __dirname;

/* API groups whose models come from a package other than kubernetes-models. */
const EXTRA_GROUPS = { "keda.sh": "@kubernetes-models/keda" };

/* The errors of the tree being checked (checkTree points it at its own). */
let errors = [];
const sourceCache = new Map();

function report(where, message) {
    errors.push(`${where}: ${message}`);
}

/* --- documents ----------------------------------------------------------- */

/* A parsed YAML document: file, the yaml Document, its JS value, a label. */
function loadFile(file, display) {
    const text = fs.readFileSync(file, "utf8");
    const lineCounter = new YAML.LineCounter();
    const parsed = YAML.parseAllDocuments(text, {
        version: "1.1",
        uniqueKeys: true,
        prettyErrors: false,
        lineCounter,
    });
    const docs = [];
    for (const doc of Array.isArray(parsed) ? parsed : [parsed]) {
        for (const e of [...doc.errors, ...doc.warnings]) {
            const line = e.pos ? lineCounter.linePos(e.pos[0]).line : 0;
            report(`${display}:${line}`, `yaml: ${e.message.split("\n")[0]}`);
        }
        if (doc.errors.length > 0 || doc.contents === null)
            continue;
        /* JSON round trip: what the API server would receive. */
        const value = JSON.parse(JSON.stringify(doc.toJS()));
        docs.push({ file: display, doc, lineCounter, value });
    }
    return docs;
}

function label(d) {
    const v = d.value || {};
    const name = v.metadata && v.metadata.name;
    return `${v.kind || "?"}${name ? "/" + name : ""}`;
}

function pathText(p) {
    let s = "";
    for (const seg of p)
        s += typeof seg === "number" ? `[${seg}]` : (s ? "." : "") + seg;
    return s || "(document)";
}

/* The line of the key (or item) at path p in a document, else its start. */
function lineOf(d, p) {
    if (!d.doc)
        return null;
    let node = d.doc.contents;
    let offset = node && node.range ? node.range[0] : 0;
    for (const seg of p) {
        if (YAML.isMap(node)) {
            const pair = node.items.find((it) => {
                const k = YAML.isScalar(it.key) ? it.key.value : it.key;
                return String(k) === String(seg);
            });
            if (!pair)
                break;
            if (pair.key && pair.key.range)
                offset = pair.key.range[0];
            node = pair.value;
        } else if (YAML.isSeq(node)) {
            node = node.items[seg];
            if (node && node.range)
                offset = node.range[0];
        } else {
            break;
        }
    }
    return d.lineCounter.linePos(offset).line;
}

function where(d, p) {
    const line = lineOf(d, p);
    return `${d.file}${line ? ":" + line : ""}: ${label(d)}: ${pathText(p)}`;
}

/* --- schemas --------------------------------------------------------------- */

/* { tsModule, tsName, validate(value) -> ajv errors } or null. */
function modelFor(apiVersion, kind) {
    if (typeof apiVersion !== "string" || typeof kind !== "string" || !/^[A-Za-z0-9]+$/.test(kind))
        return null;
    const slash = apiVersion.indexOf("/");
    const group = slash < 0 ? "" : apiVersion.slice(0, slash);
    const version = slash < 0 ? apiVersion : apiVersion.slice(slash + 1);
    if (group === "kustomize.config.k8s.io") {
        const ok = (version === "v1beta1" && kind === "Kustomization") ||
                   (version === "v1alpha1" && kind === "Component");
        return ok ? { tsModule: "./kustomize", tsName: `I${kind}`, validate: null } : null;
    }
    const pkg = EXTRA_GROUPS[group];
    const mod = pkg ? `${pkg}/${group}/${version}/${kind}`
                    : `kubernetes-models/${group ? group + "/" : ""}${version}/${kind}`;
    let Model;
    try {
        Model = require(mod)[kind];
    } catch (e) {
        return null;
    }
    if (typeof Model !== "function")
        return null;
    return {
        tsModule: mod,
        tsName: `I${kind}`,
        validate(value) {
            try {
                new Model(value).validate();
                return [];
            } catch (e) {
                if (Array.isArray(e.errors))
                    return e.errors;
                throw e;
            }
        },
    };
}

function pointerToPath(pointer) {
    if (!pointer)
        return [];
    return pointer.split("/").slice(1).map((s) => {
        const seg = s.replace(/~1/g, "/").replace(/~0/g, "~");
        return /^\d+$/.test(seg) ? Number(seg) : seg;
    });
}

function ajvMessage(e) {
    let m = e.message || e.keyword;
    if (e.params && e.params.allowedValues)
        m += `: ${e.params.allowedValues.join(", ")}`;
    return m;
}

/* Schema check (2) of each unit; returns the units to type-check. */
function schemaCheck(units) {
    const typed = [];
    for (const d of units) {
        const v = d.value;
        if (v === null || typeof v !== "object" || Array.isArray(v)) {
            report(where(d, []), "a manifest must be a mapping");
            continue;
        }
        const model = modelFor(v.apiVersion, v.kind);
        if (!model) {
            report(where(d, []), `no schema for apiVersion ${JSON.stringify(v.apiVersion)}, ` +
                   `kind ${JSON.stringify(v.kind)} (misspelt, or not a kind this check knows)`);
            continue;
        }
        d.schemaPaths = new Set();
        if (model.validate) {
            for (const e of model.validate(v)) {
                const p = pointerToPath(e.instancePath);
                d.schemaPaths.add(pathText(p));
                report(where(d, p), `schema: ${ajvMessage(e)}`);
            }
        }
        typed.push({ d, model });
    }
    return typed;
}

/* --- strict check: TypeScript ------------------------------------------- */

/*
 * Each object of each document is checked by declarations of its own, with
 * its type reached from the document's interface through K (a property) and
 * E (an array element):
 *   - an object literal whose values are all `X` (any): unknown keys (with
 *     the compiler's "did you mean") and missing required ones;
 *   - one declaration per key typed KeyOf<T>: every unknown key, not only
 *     the first the literal reports;
 *   - one declaration per scalar or array value: its type.
 * Nested objects get their own declarations. A key the type does not have
 * makes K `any`, so an unknown key is reported once, where it is.
 */
function strictCheck(typed) {
    if (typed.length === 0)
        return;
    const header = [
        "type NN<T> = NonNullable<T>;",
        "type K<T, P extends string> = P extends keyof NN<T> ? NN<NN<T>[P]> : any;",
        "type E<T> = NN<T> extends ReadonlyArray<infer U> ? NN<U> : any;",
        "type KeyOf<T> = keyof NN<T>;",
        "declare const X: any;",
    ];
    const imports = new Map();
    const body = [];
    const types = [];
    const at = []; /* body line -> { d, path, what } */
    let ids = 0;

    const alias = (expr) => {
        const name = `T${ids++}`;
        types.push(`type ${name} = ${expr};`);
        return name;
    };
    const pending = [];
    const literal = (d, typeName, v, p) => {
        if (v === null || typeof v !== "object")
            return JSON.stringify(v);
        if (Array.isArray(v)) {
            const el = alias(`E<${typeName}>`);
            return "[" + v.map((x, i) => literal(d, el, x, [...p, i])).join(", ") + "]";
        }
        pending.push([d, typeName, v, p]);
        return "X";
    };
    /* Plain names where possible: the compiler's spelling suggestions
     * ("did you mean") only work on those. */
    const propName = (k) => (/^[A-Za-z_$][A-Za-z0-9_$]*$/.test(k) ? k : JSON.stringify(k));
    const emit = (spot, line) => {
        at[body.length] = spot;
        body.push(line);
    };
    const emitObject = (d, typeName, obj, p) => {
        const keys = Object.keys(obj);
        emit({ d, path: p, what: "object" }, `const v${ids++}: ${typeName} = {`);
        for (const k of keys)
            emit({ d, path: [...p, k], what: "object" }, `  ${propName(k)}: X,`);
        body.push("};");
        for (const k of keys)
            emit({ d, path: [...p, k], what: "key" }, `const k${ids++}: KeyOf<${typeName}> = ${JSON.stringify(k)};`);
        for (const k of keys) {
            const child = alias(`K<${typeName}, ${JSON.stringify(k)}>`);
            const lit = literal(d, child, obj[k], [...p, k]);
            if (lit !== "X")
                emit({ d, path: [...p, k], what: "value" }, `const p${ids++}: ${child} = ${lit};`);
        }
    };

    for (const { d, model } of typed) {
        const key = `${model.tsModule}#${model.tsName}`;
        if (!imports.has(key))
            imports.set(key, `M${imports.size}`);
        const root = alias(imports.get(key));
        pending.push([d, root, d.value, []]);
        while (pending.length > 0)
            emitObject(...pending.shift());
    }
    const importLines = [...imports].map(([key, local]) => {
        const [mod, name] = key.split("#");
        return `import type { ${name} as ${local} } from ${JSON.stringify(mod)};`;
    });
    const first = importLines.length + header.length;
    const source = [...importLines, ...header, ...body, ...types, ""].join("\n");

    const file = path.join(HERE, "__manifests__.ts"); /* never written */
    const options = {
        strict: true,
        noEmit: true,
        skipLibCheck: true,
        types: [],
        lib: ["lib.es2020.d.ts"],
        target: ts.ScriptTarget.ES2020,
        module: ts.ModuleKind.CommonJS,
        moduleResolution: ts.ModuleResolutionKind.Node10,
    };
    const host = ts.createCompilerHost(options);
    const parse = host.getSourceFile.bind(host);
    /* .d.ts files are parsed once per process, not once per tree. */
    const getSourceFile = (f, lang, ...rest) => {
        let sf = sourceCache.get(f);
        if (!sf) {
            sf = parse(f, lang, ...rest);
            if (sf)
                sourceCache.set(f, sf);
        }
        return sf;
    };
    const fileExists = host.fileExists.bind(host);
    const readFile = host.readFile.bind(host);
    host.getSourceFile = (f, lang, ...rest) =>
        path.resolve(f) === file ? ts.createSourceFile(f, source, lang, true) : getSourceFile(f, lang, ...rest);
    host.fileExists = (f) => path.resolve(f) === file || fileExists(f);
    host.readFile = (f) => (path.resolve(f) === file ? source : readFile(f));
    const program = ts.createProgram([file], options, host);
    const diagnostics = [
        ...program.getOptionsDiagnostics(),
        ...program.getSyntacticDiagnostics(),
        ...program.getSemanticDiagnostics(),
    ];
    diagnostics.sort((a, b) => (a.start || 0) - (b.start || 0));
    for (const diag of diagnostics) {
        let text = ts.flattenDiagnosticMessageText(diag.messageText, " ");
        text = text.replace(/\s+/g, " ");
        errors = typed[0].d.tree.errors;
        if (!diag.file || path.resolve(diag.file.fileName) !== file || diag.start === undefined) {
            report("validate-k8s", `typescript: ${text}`);
            continue;
        }
        const line = diag.file.getLineAndCharacterOfPosition(diag.start).line - first;
        const spot = at[line];
        if (!spot) {
            report("validate-k8s", `typescript (generated line ${line}): ${text}`);
            continue;
        }
        const tree = spot.d.tree;
        errors = tree.errors;
        /* A rendered copy of a broken source would say it all again. */
        if (spot.d.rendered && tree.sourceErrors > 0)
            continue;
        if (!spot.d.rendered)
            tree.sourceErrors++;
        /* One error per place: the schema check's, else the first here. */
        const place = pathText(spot.path);
        const seen = (spot.d.schemaPaths = spot.d.schemaPaths || new Set());
        if (seen.has(place))
            continue;
        seen.add(place);
        const excess = /^Object literal may only specify known properties, (?:and|but) '"?([^'"]*)"?' does not exist in type '(.*?)'\.(?: Did you mean to write '([^']*)'\?)?/.exec(text);
        if (spot.what === "key" || excess) {
            const key = spot.path[spot.path.length - 1];
            text = `unknown field ${JSON.stringify(String(key))}`;
            if (excess && /^[A-Za-z0-9_]+$/.test(excess[2]))
                text += ` in ${excess[2]}`;
            if (excess && excess[3])
                text += `; did you mean "${excess[3]}"?`;
        }
        text = text.replace(/ in type '\{[^']*\}'/g, "");
        if (text.length > 300)
            text = text.slice(0, 300) + "...";
        report(where(spot.d, spot.path), `strict: ${text}`);
    }
}

/* --- kustomize ------------------------------------------------------------ */

const KUSTOMIZATION_NAMES = ["kustomization.yaml", "kustomization.yml", "Kustomization"];
const isManifest = (f) => /\.ya?ml$/.test(f) && !KUSTOMIZATION_NAMES.includes(f);
const isExample = (f) => /\.example\.ya?ml$/.test(f);

function walk(dir, out = []) {
    for (const ent of fs.readdirSync(dir, { withFileTypes: true })) {
        if (ent.name.startsWith(".") || ent.name === "node_modules")
            continue;
        const p = path.join(dir, ent.name);
        if (ent.isDirectory())
            walk(p, out);
        else if (ent.isFile())
            out.push(p);
    }
    return out;
}

function kustomizationIn(dir) {
    for (const n of KUSTOMIZATION_NAMES)
        if (fs.existsSync(path.join(dir, n)))
            return path.join(dir, n);
    return null;
}

/* Checks (4); returns the set of files listed as resources anywhere. */
function kustomizeCheck(root, byFile, rel) {
    const listed = new Set();
    const dirs = new Set(walk(root).filter((f) => isManifest(path.basename(f)) ||
                                                 KUSTOMIZATION_NAMES.includes(path.basename(f)))
                                    .map((f) => path.dirname(f)));
    for (const dir of [...dirs].sort()) {
        const kfile = kustomizationIn(dir);
        if (!kfile) {
            report(rel(dir), "manifests in a directory without a kustomization.yaml");
            continue;
        }
        const kd = (byFile.get(kfile) || [])[0];
        if (!kd)
            continue; /* a YAML error, reported */
        const k = kd.value || {};
        const mentioned = new Set();
        const checkEntry = (entry, p, wantKind) => {
            if (typeof entry !== "string")
                return;
            if (/^[a-z]+:\/\//.test(entry) || /^(github\.com|gitlab\.com|git@)/.test(entry)) {
                report(where(kd, p), `${entry}: remote resources cannot be checked offline`);
                return;
            }
            if (path.isAbsolute(entry)) {
                report(where(kd, p), `${entry}: kustomize needs a relative path`);
                return;
            }
            const target = path.resolve(dir, entry);
            if (!fs.existsSync(target)) {
                report(where(kd, p), `${entry}: no such file or directory`);
                return;
            }
            mentioned.add(target);
            if (fs.statSync(target).isDirectory()) {
                const sub = kustomizationIn(target);
                if (!sub) {
                    report(where(kd, p), `${entry}: a directory without a kustomization.yaml`);
                    return;
                }
                const sd = (byFile.get(sub) || [])[0];
                const kind = sd && sd.value && sd.value.kind;
                if (wantKind === "Component" && kind !== "Component")
                    report(where(kd, p), `${entry}: not a kustomize Component (kind ${kind})`);
                if (wantKind !== "Component" && kind === "Component")
                    report(where(kd, p), `${entry}: a Component belongs under components:`);
            } else if (wantKind === "resource") {
                listed.add(target);
                if (isExample(entry))
                    report(where(kd, p), `${entry}: an example is never part of the build`);
                for (const d of byFile.get(target) || [])
                    if (d.value && d.value.kind === "Secret")
                        report(where(d, []), "a Secret in the build: this base ships no secret " +
                               "(keep examples in *.example.yaml)");
            }
        };
        (k.resources || []).forEach((e, i) => checkEntry(e, ["resources", i], "resource"));
        (k.components || []).forEach((e, i) => checkEntry(e, ["components", i], "Component"));
        (k.patches || []).forEach((pt, i) => pt && pt.path && checkEntry(pt.path, ["patches", i, "path"], "patch"));
        for (const gen of ["configMapGenerator", "secretGenerator"]) {
            (k[gen] || []).forEach((g, i) => {
                for (const f of (g && g.files) || []) {
                    const src = String(f).includes("=") ? String(f).split("=").slice(1).join("=") : f;
                    checkEntry(src, [gen, i, "files"], "file");
                }
            });
        }
        for (const f of fs.readdirSync(dir).sort()) {
            const p = path.join(dir, f);
            if (!isManifest(f) || !fs.statSync(p).isFile() || isExample(f) || mentioned.has(p))
                continue;
            report(rel(p), `not listed in ${rel(kfile)}: list it under resources, ` +
                   "or name it *.example.yaml if it is only an example");
        }
    }
    return listed;
}

/* Render with kubectl kustomize (or kustomize build) when one is installed. */
function renderer() {
    for (const [cmd, args] of [["kustomize", ["build"]], ["kubectl", ["kustomize"]]]) {
        const r = spawnSync(cmd, [...args, "--help"], { encoding: "utf8", timeout: 20000 });
        if (r.status === 0)
            return (dir) => spawnSync(cmd, [...args, dir], { encoding: "utf8", timeout: 60000 });
    }
    return null;
}

function renderCheck(root, rel) {
    const render = renderer();
    if (!render) {
        console.log("validate-k8s: neither kustomize nor kubectl is installed: not rendering " +
                    "(the resource lists are checked instead)");
        return null;
    }
    const targets = [];
    const kfiles = walk(root).filter((f) => KUSTOMIZATION_NAMES.includes(path.basename(f)));
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "pgwork-kustomize-"));
    try {
        for (const kf of kfiles.sort()) {
            const dir = path.dirname(kf);
            let kind;
            try {
                kind = YAML.parse(fs.readFileSync(kf, "utf8"), { version: "1.1" }).kind;
            } catch (e) {
                continue; /* reported */
            }
            if (kind === "Component") {
                /* A component alone renders nothing: apply it to the base. */
                const overlay = fs.mkdtempSync(path.join(tmp, "overlay-"));
                fs.writeFileSync(path.join(overlay, "kustomization.yaml"), YAML.stringify({
                    apiVersion: "kustomize.config.k8s.io/v1beta1",
                    kind: "Kustomization",
                    resources: [path.relative(overlay, root)],
                    components: [path.relative(overlay, dir)],
                }));
                targets.push([`${rel(root)} + component ${rel(dir)}`, overlay]);
            } else {
                targets.push([rel(dir), dir]);
            }
        }
        const units = [];
        for (const [name, dir] of targets) {
            const r = render(dir);
            if (r.status !== 0) {
                const why = (r.stderr || r.error || "failed").toString().trim().split("\n").slice(-3)
                    .map((l) => l.replace(/^[EWI]\d{4} [\d:.]+\s+\d+ [^\]]*\] /, "")).join(" / ");
                report(`render ${name}`, why);
                continue;
            }
            const docs = YAML.parseAllDocuments(r.stdout, { version: "1.1" });
            for (const doc of Array.isArray(docs) ? docs : [docs])
                if (doc.contents !== null)
                    units.push({ file: `(rendered ${name})`, value: JSON.parse(JSON.stringify(doc.toJS())) });
        }
        return units;
    } finally {
        fs.rmSync(tmp, { recursive: true, force: true });
    }
}

/* --- pgwork's rules ------------------------------------------------------- */

/* workers.shutdown_timeout of a pgwork.conf, in seconds (default 25 s). */
function shutdownTimeout(conf) {
    const text = conf.replace(/#[^\n]*/g, "").replace(/\/\/[^\n]*/g, "");
    const m = /\bshutdown_timeout\s*=\s*["']?\s*(\d+)\s*(ms|s|m|h)?\s*["']?/.exec(text);
    if (!m)
        return 25;
    const n = Number(m[1]);
    return { ms: n / 1000, s: n, m: n * 60, h: n * 3600, undefined: n }[m[2]];
}

function matches(selector, labels) {
    if (!selector || typeof selector !== "object" || Object.keys(selector).length === 0)
        return false;
    return Object.entries(selector).every(([k, v]) => labels && labels[k] === v);
}

/* The dashboard's objects (deploy/kubernetes/web): component label "web". */
function isWeb(d) {
    return ((d.value.metadata || {}).labels || {})["app.kubernetes.io/component"] === "web";
}

/* pgwork web: replicas running `pgwork web`, its token and connection
 * string from Secrets, probes on its port, the same hardening. */
function webRules(docs, dbSecret) {
    const deps = docs.filter((d) => d.value && d.value.kind === "Deployment" && isWeb(d));
    for (const dep of deps) {
        const need = (ok, p, message, d = dep) => ok || report(where(d, p), message);
        const spec = dep.value.spec || {};
        const pod = (spec.template || {}).spec || {};
        const podLabels = ((spec.template || {}).metadata || {}).labels || {};
        need(Number.isInteger(spec.replicas) && spec.replicas >= 1, ["spec", "replicas"],
             "pgwork web: replicas: a whole number >= 1 (sessions are signed cookies: any replica accepts them)");
        const containers = pod.containers || [];
        const ci = containers.findIndex((c) => c && c.name === "web");
        need(ci >= 0, ["spec", "template", "spec", "containers"], "pgwork web: no container named web");
        if (ci < 0)
            continue;
        const c = containers[ci];
        const cp = ["spec", "template", "spec", "containers", ci];
        need(JSON.stringify((c.command || []).concat(c.args || [])) === '["pgwork","web"]', cp,
             "pgwork web: runs pgwork web");
        const env = c.env || [];
        const fromSecret = (name) => {
            const e = env.find((x) => x.name === name);
            return e && e.valueFrom && e.valueFrom.secretKeyRef;
        };
        need(fromSecret("PGWORK_WEB_TOKEN"), [...cp, "env"], "pgwork web: PGWORK_WEB_TOKEN from a Secret");
        const db = fromSecret("PGWORK_DATABASE_URL");
        need(db && (!dbSecret || (db.name === dbSecret.name && db.key === dbSecret.key)), [...cp, "env"],
             "pgwork web: PGWORK_DATABASE_URL from the Deployment's Secret");
        const port = (c.ports || []).find((x) => x.containerPort === 9188);
        need(port && port.name === "http-web", [...cp, "ports"], "pgwork web: containerPort 9188 named http-web");
        for (const [probe, p] of [["livenessProbe", "/healthz"], ["readinessProbe", "/readyz"]]) {
            const g = (c[probe] || {}).httpGet || {};
            need(g.path === p && (g.port === 9188 || g.port === "http-web"), [...cp, probe],
                 `pgwork web: ${probe}: httpGet ${p} on its port`);
        }
        const sec = c.securityContext || {};
        need(sec.allowPrivilegeEscalation === false && sec.readOnlyRootFilesystem === true &&
             ((sec.capabilities || {}).drop || []).includes("ALL"), [...cp, "securityContext"],
             "pgwork web: the worker Deployment's container hardening");
        for (const svc of docs.filter((d) => d.value && d.value.kind === "Service" && isWeb(d)))
            need(matches((svc.value.spec || {}).selector, podLabels), ["spec", "selector"],
                 "selects the pgwork web pod", svc);
    }
}

function pgworkRules(docs, configOut) {
    const all = docs;
    docs = docs.filter((d) => d.value && !isWeb(d));
    const of = (kind) => docs.filter((d) => d.value && d.value.kind === kind);
    const deployments = of("Deployment");
    if (deployments.length !== 1) {
        report("deploy", `expected one Deployment, found ${deployments.length}`);
        return;
    }
    const dep = deployments[0];
    const need = (ok, p, message, d = dep) => ok || report(where(d, p), message);
    const spec = (dep.value.spec || {}).template || {};
    const pod = spec.spec || {};
    const podLabels = (spec.metadata || {}).labels || {};
    const containers = pod.containers || [];
    const ci = containers.findIndex((c) => c && c.name === "pgwork");
    need(ci >= 0, ["spec", "template", "spec", "containers"], "no container named pgwork");
    if (ci < 0)
        return;
    const c = containers[ci];
    const cp = ["spec", "template", "spec", "containers", ci];
    const podSec = pod.securityContext || {};
    const sec = c.securityContext || {};

    /* probes and the metrics port */
    const ports = c.ports || [];
    const metrics = ports.find((p) => p.containerPort === 9187);
    need(metrics && metrics.name === "http-metrics", [...cp, "ports"], "containerPort 9187 named http-metrics");
    const portOk = (port) => port === 9187 || (metrics && port === metrics.name);
    for (const [probe, p] of [["livenessProbe", "/healthz"], ["readinessProbe", "/readyz"]]) {
        const g = (c[probe] || {}).httpGet || {};
        need(g.path === p && portOk(g.port), [...cp, probe], `${probe}: httpGet ${p} on port 9187`);
    }

    /* security: what the restricted Pod Security Standard asks, and more */
    const either = (k) => (sec[k] !== undefined ? sec[k] : podSec[k]);
    need(either("runAsNonRoot") === true, [...cp, "securityContext"], "runAsNonRoot: true");
    need(either("runAsUser") === 10001, [...cp, "securityContext"], "runAsUser: 10001 (the image's user)");
    need(sec.allowPrivilegeEscalation === false, [...cp, "securityContext"], "allowPrivilegeEscalation: false");
    need(sec.readOnlyRootFilesystem === true, [...cp, "securityContext"], "readOnlyRootFilesystem: true");
    need(((sec.capabilities || {}).drop || []).includes("ALL"), [...cp, "securityContext"], "capabilities.drop: [ALL]");
    need((either("seccompProfile") || {}).type === "RuntimeDefault", [...cp, "securityContext"],
         "seccompProfile.type: RuntimeDefault");
    const res = c.resources || {};
    need(res.requests && res.requests.cpu && res.requests.memory, [...cp, "resources"], "requests.cpu and requests.memory");
    need(res.limits && res.limits.memory, [...cp, "resources"], "limits.memory");

    /* the connection string from a Secret, never a literal */
    const env = c.env || [];
    const ei = env.findIndex((e) => e.name === "PGWORK_DATABASE_URL");
    const secretRef = ei >= 0 && env[ei].valueFrom && env[ei].valueFrom.secretKeyRef;
    need(secretRef && secretRef.name && secretRef.key, [...cp, "env", ei >= 0 ? ei : 0],
         "PGWORK_DATABASE_URL from a Secret (valueFrom.secretKeyRef)");
    webRules(all, secretRef);
    const cfgEnv = env.find((e) => e.name === "PGWORK_CONFIG");
    need(!cfgEnv || cfgEnv.value === "/etc/pgwork/pgwork.conf", [...cp, "env"], "PGWORK_CONFIG=/etc/pgwork/pgwork.conf");

    /* the config: a ConfigMap mounted (whole directory) at /etc/pgwork */
    const mounts = c.volumeMounts || [];
    const mi = mounts.findIndex((m) => m.mountPath === "/etc/pgwork");
    need(mi >= 0 && !mounts[mi].subPath, [...cp, "volumeMounts"],
         "a volume at /etc/pgwork, without subPath (subPath mounts never see ConfigMap updates)");
    const vol = mi >= 0 && (pod.volumes || []).find((v) => v.name === mounts[mi].name);
    const cmName = vol && vol.configMap && vol.configMap.name;
    need(cmName, ["spec", "template", "spec", "volumes"], "the /etc/pgwork volume is a ConfigMap");
    const cm = of("ConfigMap").find((d) => d.value.metadata && d.value.metadata.name === cmName);
    const conf = cm && cm.value.data && cm.value.data["pgwork.conf"];
    need(typeof conf === "string", ["spec", "template", "spec", "volumes"],
         `ConfigMap ${cmName} with a pgwork.conf key`);
    if (typeof conf === "string" && configOut)
        fs.writeFileSync(configOut, conf);

    /* shutdown: preStop quiets PID 1; the grace period covers the drain */
    const pre = (((c.lifecycle || {}).preStop || {}).exec || {}).command || [];
    const preText = pre.join(" ");
    need(/kill -(TSTP|SIGTSTP|s TSTP) 1\b/.test(preText), [...cp, "lifecycle"], "preStop: kill -TSTP 1 (quiet before TERM)");
    const sleep = Number((/\bsleep (\d+)/.exec(preText) || [0, 0])[1]);
    const grace = pod.terminationGracePeriodSeconds === undefined ? 30 : pod.terminationGracePeriodSeconds;
    if (typeof conf === "string" && typeof grace === "number") {
        const drain = shutdownTimeout(conf);
        need(grace >= sleep + drain + 5, ["spec", "template", "spec", "terminationGracePeriodSeconds"],
             `${grace} s is not above preStop sleep (${sleep} s) + workers.shutdown_timeout ` +
             `(${drain} s) + 5 s: running tasks would be SIGKILLed`);
    }
    const selector = ((dep.value.spec || {}).selector || {}).matchLabels;
    need(matches(selector, podLabels), ["spec", "selector"], "selector.matchLabels must match the pod labels");

    /* the metrics Service and the PDB select these pods */
    for (const s of of("Service")) {
        const sp = s.value.spec || {};
        need(matches(sp.selector, podLabels), ["spec", "selector"], "selects the pgwork pods", s);
        need((sp.ports || []).some((p) => p.port === 9187 && p.name === "http-metrics" && portOk(p.targetPort)),
             ["spec", "ports"], "port 9187 named http-metrics, to the container's 9187", s);
    }
    for (const b of of("PodDisruptionBudget"))
        need(matches(((b.value.spec || {}).selector || {}).matchLabels, podLabels), ["spec", "selector"],
             "selects the pgwork pods", b);

    /* the migrate Job: same image and Secret, same hardening, not selected */
    const image = String(c.image || "").replace(/[:@].*$/, "");
    for (const j of of("Job")) {
        const jt = (j.value.spec || {}).template || {};
        const jc = ((jt.spec || {}).containers || [])[0] || {};
        const jp = ["spec", "template", "spec", "containers", 0];
        need(JSON.stringify((jc.command || []).concat(jc.args || [])) === '["pgwork","migrate"]', jp,
             "runs pgwork migrate", j);
        need(String(jc.image || "").replace(/[:@].*$/, "") === image, [...jp, "image"],
             `the Deployment's image (${image})`, j);
        const je = (jc.env || []).find((e) => e.name === "PGWORK_DATABASE_URL");
        const jr = je && je.valueFrom && je.valueFrom.secretKeyRef;
        need(jr && secretRef && jr.name === secretRef.name && jr.key === secretRef.key, [...jp, "env"],
             "PGWORK_DATABASE_URL from the Deployment's Secret", j);
        const js = jc.securityContext || {};
        need(js.allowPrivilegeEscalation === false && js.readOnlyRootFilesystem === true &&
             ((js.capabilities || {}).drop || []).includes("ALL"), [...jp, "securityContext"],
             "the Deployment's container hardening", j);
        need(!matches(selector, (jt.metadata || {}).labels), ["spec", "template", "metadata", "labels"],
             "the Deployment's selector (and so the Service and PDB) must not match the Job's pods", j);
    }

    /* KEDA: scales this Deployment on a query over the same connection */
    for (const s of of("ScaledObject")) {
        const sp = s.value.spec || {};
        const ref = sp.scaleTargetRef || {};
        need(ref.name === dep.value.metadata.name && (!ref.kind || ref.kind === "Deployment"),
             ["spec", "scaleTargetRef"], `targets Deployment ${dep.value.metadata.name}`, s);
        const ti = (sp.triggers || []).findIndex((t) => t.type === "postgresql");
        need(ti >= 0, ["spec", "triggers"], "a postgresql trigger", s);
        if (ti < 0)
            continue;
        const md = sp.triggers[ti].metadata || {};
        need(env.some((e) => e.name === md.connectionFromEnv), ["spec", "triggers", ti, "metadata"],
             "connectionFromEnv names a variable of the Deployment's container", s);
        need(/\bpgwork\.tasks\b/.test(md.query || "") && /'pending'/.test(md.query || ""),
             ["spec", "triggers", ti, "metadata", "query"], "counts pending tasks in pgwork.tasks", s);
        need(/^\d+(\.\d+)?$/.test(md.targetQueryValue || ""), ["spec", "triggers", ti, "metadata"],
             "targetQueryValue: a number, as a string", s);
    }
}

/* --- main ------------------------------------------------------------------ */

/*
 * Checks (1), (2), (4), (5) and rendering of one tree; returns it with the
 * units for the strict check (3), which runs once for all trees: one
 * compiler program is most of the cost.
 */
function prepareTree(dir, render, configOut) {
    const tree = { dir, errors: [], units: [], sourceErrors: 0, docs: 0, files: 0, rendered: null };
    errors = tree.errors;
    const root = path.resolve(dir);
    if (!fs.existsSync(root) || !fs.statSync(root).isDirectory()) {
        report(dir, "not a directory");
        return tree;
    }
    const rel = (p) => path.relative(process.cwd(), p) || ".";
    tree.dir = rel(root);

    const files = walk(root).filter((f) => /\.ya?ml$/.test(f) || path.basename(f) === "Kustomization").sort();
    const byFile = new Map();
    const docs = [];
    for (const f of files) {
        const ds = loadFile(f, rel(f));
        byFile.set(f, ds);
        docs.push(...ds);
    }
    tree.docs = docs.length;
    tree.files = files.length;
    tree.units = schemaCheck(docs);
    kustomizeCheck(root, byFile, rel);
    pgworkRules(docs.filter((d) => d.value && d.value.kind), configOut);
    /* What kustomize makes of it, patches applied: only for sources that
     * pass so far (a broken source would be reported twice). */
    const output = render && errors.length === 0 ? renderCheck(root, rel) : null;
    if (output) {
        const rendered = schemaCheck(output);
        rendered.forEach((u) => (u.d.rendered = true));
        tree.rendered = output.length;
        tree.units.push(...rendered);
    }
    tree.sourceErrors = errors.length;
    tree.units.forEach((u) => (u.d.tree = tree));
    return tree;
}

/* Several trees in one run (the negative tests): each is judged on its own. */
function main(argv) {
    let configOut = null;
    let render = true;
    const dirs = [];
    for (let i = 0; i < argv.length; i++) {
        if (argv[i] === "--extract-config")
            configOut = argv[++i];
        else if (argv[i] === "--no-render")
            render = false;
        else
            dirs.push(argv[i]);
    }
    if (dirs.length === 0 || (argv.includes("--extract-config") && (!configOut || dirs.length !== 1))) {
        console.error("usage: node validate-k8s.js [--no-render] [--extract-config FILE] DIR [DIR...]");
        return 2;
    }
    const trees = dirs.map((d) => prepareTree(d, render, configOut));
    strictCheck(trees.flatMap((t) => t.units));
    let bad = 0;
    for (const t of trees) {
        for (const e of t.errors)
            console.error(e);
        if (t.errors.length > 0) {
            console.error(`validate-k8s: ${t.dir}: ${t.errors.length} error${t.errors.length === 1 ? "" : "s"}`);
            bad++;
            continue;
        }
        console.log(`validate-k8s: ${t.dir}: ${t.docs} documents in ${t.files} files` +
                    (t.rendered !== null ? `, ${t.rendered} rendered by kustomize` : "") +
                    ": valid against their schemas (strict), kustomize lists and pgwork's rules ok");
    }
    return bad > 0 ? 1 : 0;
}

process.exitCode = main(process.argv.slice(2));
