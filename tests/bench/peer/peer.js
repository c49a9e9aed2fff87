// peer.js — graphile-worker 0.17 measured the way `make bench` measures
// pgwork (tests/bench/peer.c runs it and reads its one JSON line):
//
//   throughput: N no-op jobs added by ONE graphile_worker.add_jobs() call;
//               the window is the first handler start to the jobs table
//               empty (completions are batched, so "handled" is not "done";
//               a finished job is deleted, so its own timestamps are gone:
//               the handler's clock and the empty table stand in for
//               pgwork's started_at and finished_at). From the commit of
//               add_jobs() as well, for the record;
//   pickup:     single jobs ~gap ms apart into an idle runner; handler start
//               minus the moment add_job's commit returned to us.
//
// Settings: the fastest the documentation offers — concurrency 10, a local
// queue of 500 (jobs fetched in batches) and batched completion
// (completeJobBatchDelay / failJobBatchDelay 0). Connection: libpq's PG*
// variables (a unix socket), database $PEER_DB, which peer.c sets to
// synchronous_commit = off, as pgwork's workers run.
//
//   node peer.js --jobs 20000 --repeat 3 --samples 300 --gap-ms 20
"use strict";

const { run, Logger } = require("graphile-worker");
const { Pool } = require("pg");
const { performance } = require("perf_hooks");

function option(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
}

const JOBS = option("jobs", 20000);
const REPEAT = option("repeat", 3);
const SAMPLES = option("samples", 300);
const GAP_MS = option("gap-ms", 20);
const CONCURRENCY = 10;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function percentile(values, p) {
  const v = [...values].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil((p / 100) * v.length));
  return v[rank - 1];
}

async function main() {
  const pool = new Pool({ database: process.env.PEER_DB, max: CONCURRENCY + 4 });
  pool.on("error", (e) => console.error("pool:", e.message)); // an idle client's error
  let handled = 0;
  let firstStart = null; // performance.now() of the batch's first handler call
  let target = Infinity;
  let allHandled = null;
  const started = new Map(); // latency job i -> handler start (performance.now)
  let startedWaiter = null;

  const taskList = {
    noop: async () => {
      if (handled === 0) firstStart = performance.now();
      handled++;
      if (handled === target && allHandled) allHandled();
    },
    latency: async (payload) => {
      started.set(payload.i, performance.now());
      if (startedWaiter) startedWaiter(payload.i);
    },
  };
  const runner = await run({
    pgPool: pool,
    concurrency: CONCURRENCY,
    noHandleSignals: true,
    pollInterval: 2000,
    logger: new Logger(() => () => {}),
    taskList,
    preset: {
      worker: {
        concurrentJobs: CONCURRENCY,
        localQueue: { size: 500 },
        completeJobBatchDelay: 0,
        failJobBatchDelay: 0,
      },
    },
  });

  const client = await pool.connect();
  const remaining = async () =>
    Number((await client.query("select count(*) from graphile_worker._private_jobs")).rows[0].count);

  async function batch(n) {
    handled = 0;
    firstStart = null;
    target = n;
    const done = new Promise((resolve) => (allHandled = resolve));
    await client.query(
      `select graphile_worker.add_jobs(array(
         select json_populate_record(null::graphile_worker.job_spec,
                json_build_object('identifier', 'noop', 'payload', '{}'::json))
         from generate_series(1, $1::int)))`,
      [n],
    );
    const committed = performance.now();
    await done;
    while ((await remaining()) > 0) await sleep(2);
    const empty = performance.now();
    return { window: (n * 1000) / (empty - firstStart), fromCommit: (n * 1000) / (empty - committed) };
  }

  await batch(1000); // warm-up: JIT, prepared statements, connections
  const throughput = [];
  const fromCommit = [];
  for (let r = 0; r < REPEAT; r++) {
    const rates = await batch(JOBS);
    throughput.push(rates.window);
    fromCommit.push(rates.fromCommit);
  }
  const sc = await client.query("show synchronous_commit");

  await sleep(500); // idle again
  const latencies = [];
  for (let i = 0; i < SAMPLES + 10; i++) {
    const t0 = performance.now();
    const seen = new Promise((resolve) => {
      startedWaiter = (j) => j === i && resolve();
    });
    await client.query("select graphile_worker.add_job('latency', json_build_object('i', $1::int))", [i]);
    const committed = performance.now();
    await Promise.race([seen, sleep(5000)]);
    if (!started.has(i)) throw new Error(`latency job ${i} not started within 5 s`);
    if (i >= 10) latencies.push(started.get(i) - committed); // 10 warm-up jobs
    const spent = performance.now() - t0;
    if (spent < GAP_MS) await sleep(GAP_MS - spent);
  }

  client.release();
  await runner.stop();
  await pool.end();
  const version = require("graphile-worker/package.json").version;
  process.stdout.write(
    JSON.stringify({
      version,
      jobs: JOBS,
      concurrency: CONCURRENCY,
      synchronous_commit: sc.rows[0].synchronous_commit,
      throughput,
      throughput_from_commit: fromCommit,
      pickup_p50_ms: percentile(latencies, 50),
      pickup_p99_ms: percentile(latencies, 99),
      samples: latencies.length,
    }) + "\n",
  );
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
