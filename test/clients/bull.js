// bull.js -- the legacy Bull (npm `bull` 4.16.5, on its own ioredis 5.x),
// unchanged, through shardproxy: a job queue with prefix {bull} (so every key
// of the queue, and every channel its Lua scripts PUBLISH on, hashes to one
// backend, as Bull documents for Redis Cluster), JOBS jobs processed by
// WORKERS Queue instances (each its own client, subscriber and blocking
// connection) with process(5, ...): one job in ten delayed (300 to 1,200 ms),
// a few failing their first attempt and retried (attempts: 2), and every
// instance listening to `global:completed` (SUBSCRIBE to {bull}:NAME:completed,
// fed by PUBLISH from the moveToFinished script).
//
//   node bull.js HOST PORT [JOBS] [WORKERS]
//
// Checks, each an `ok ...` line, or `FAIL ...` and exit 1: every job
// completed exactly once with its result (the right number of attempts for
// the retried ones); the delayed ones not before their delay and at most 3 s
// after it (Bull learns of a new delayed job from a PUBLISH on
// {bull}:NAME:delayed; without pub/sub it would find them only at its 5 s
// guard timer); each instance saw JOBS global:completed events; the job
// counts at the end.  A hard limit of 90 s exits 1 too.  It runs against a
// plain redis-server the same way (node bull.js 127.0.0.1 6379).
'use strict';

const Queue = require('bull');

const [host, portArg, jobsArg, workersArg] = process.argv.slice(2);
if (!host || !/^\d+$/.test(portArg || '')) {
  console.error('usage: node bull.js HOST PORT [JOBS] [WORKERS]');
  process.exit(2);
}
const redis = { host, port: Number(portArg) };
const JOBS = Number(jobsArg || 200);
const WORKERS = Number(workersArg || 2);
const CONCURRENCY = 5;
const LIMIT_MS = 90000;
const LATE_MS = 3000;
const prefix = '{bull}';
const name = `q${process.pid}`;

function fail(msg) {
  console.log(`FAIL ${String(msg).replace(/\s+/g, ' ').trim()}`);
  process.exit(1);
}

const watchdog = setTimeout(() => fail(`bull: not done after ${LIMIT_MS / 1000} s`), LIMIT_MS);

// PROMISE within MS, its rejection reported as `WHAT: ERROR`.
function withTimeout(promise, ms, what) {
  let t;
  return Promise.race([
    Promise.resolve(promise).catch((err) => {
      throw new Error(`${what}: ${err && err.message ? err.message : err}`);
    }),
    new Promise((_, reject) => {
      t = setTimeout(() => reject(new Error(`${what}: not done within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(t));
}

const isDelayed = (n) => n % 10 === 5;
const delayOf = (n) => 300 + (n % 4) * 300;
const isFlaky = (n) => n % 40 === 7; // throws on its first attempt

async function main() {
  const t0 = Date.now();
  const queues = [];
  const errors = [];
  for (let w = 0; w < WORKERS; w++) {
    const q = new Queue(name, { redis, prefix });
    q.on('error', (err) => errors.push(`queue ${w}: ${err && err.message ? err.message : err}`));
    queues.push(q);
  }
  await withTimeout(Promise.all(queues.map((q) => q.isReady())), 10000, 'Queue.isReady');

  const runs = new Map(); // n -> processor invocations
  const done = new Map(); // job id -> { n, by, attempts }
  const lateness = [];
  const globalSeen = queues.map(() => new Set());
  let resolveAll, rejectAll;
  const allDone = new Promise((res, rej) => { resolveAll = res; rejectAll = rej; });
  const registered = queues.map((q) => new Promise((res) => q.once('registered:global:completed', res)));
  const allGlobal = Promise.all(queues.map((q, w) => new Promise((res) => {
    q.on('global:completed', (jobId) => {
      globalSeen[w].add(String(jobId));
      if (globalSeen[w].size === JOBS) res();
    });
  })));

  queues.forEach((q, w) => {
    q.process('double', CONCURRENCY, async (job) => {
      const { n } = job.data;
      runs.set(n, (runs.get(n) || 0) + 1);
      if (job.opts.delay) lateness.push(Date.now() - (job.timestamp + job.opts.delay));
      if (isFlaky(n) && job.attemptsMade === 0) throw new Error(`first attempt of job n=${n} fails`);
      return { doubled: n * 2, by: w };
    }).catch((err) => errors.push(`queue ${w} process(): ${err && err.message ? err.message : err}`));
    q.on('completed', (job, result) => {
      if (done.has(job.id)) rejectAll(new Error(`job ${job.id} (n=${job.data.n}) completed twice`));
      if (!result || result.doubled !== job.data.n * 2) {
        rejectAll(new Error(`job ${job.id}: wrong result ${JSON.stringify(result)}`));
      }
      done.set(job.id, { n: job.data.n, by: w, attempts: job.attemptsMade });
      if (done.size === JOBS) resolveAll();
    });
    q.on('failed', (job, err) => {
      if (!(isFlaky(job.data.n) && job.attemptsMade === 1)) {
        rejectAll(new Error(`job ${job.id} (n=${job.data.n}) failed: ${err && err.message}`));
      }
    });
  });
  // the subscriptions (global:completed, and delayed from process()) are in
  // place before any job is added
  await withTimeout(Promise.all(queues.map((q) => q._initializingProcess)), 10000,
    'process() setup (SUBSCRIBE to the delayed channel)');
  await withTimeout(Promise.all(registered), 10000, 'SUBSCRIBE for global:completed');

  let delayed = 0, flaky = 0;
  const batch = [];
  for (let n = 0; n < JOBS; n++) {
    const opts = {};
    if (isDelayed(n)) {
      opts.delay = delayOf(n);
      delayed++;
    }
    if (isFlaky(n)) {
      opts.attempts = 2;
      flaky++;
    }
    batch.push({ name: 'double', data: { n }, opts });
  }
  const added = [];
  for (let i = 0; i < batch.length; i += 50) {
    added.push(...await withTimeout(queues[i / 50 % WORKERS].addBulk(batch.slice(i, i + 50)), 10000, 'addBulk'));
  }
  if (added.length !== JOBS || new Set(added.map((j) => String(j.id))).size !== JOBS) {
    fail(`addBulk returned ${added.length} jobs, ${new Set(added.map((j) => String(j.id))).size} distinct ids`);
  }
  console.log(`ok added ${JOBS} jobs (${delayed} delayed, ${flaky} failing once) to ${prefix}:${name}`);

  await withTimeout(allDone, 60000, `${JOBS} completions (${done.size} so far)`);
  if (errors.length) fail(`queue error events: ${errors.slice(0, 3).join(' | ')}`);
  const byWorker = new Array(WORKERS).fill(0);
  for (const d of done.values()) byWorker[d.by]++;
  const ns = [...done.values()].map((d) => d.n).sort((a, b) => a - b);
  if (ns.length !== JOBS || ns.some((n, i) => n !== i)) fail(`completed jobs do not cover n=0..${JOBS - 1} once each`);
  for (const d of done.values()) {
    const want = isFlaky(d.n) ? 1 : 0;
    if (d.attempts !== want + 1 && d.attempts !== want) {
      fail(`job n=${d.n} completed after ${d.attempts} attempts made`);
    }
    const r = runs.get(d.n);
    if (r !== want + 1) fail(`job n=${d.n}: processor ran ${r} times, expected ${want + 1}`);
  }
  console.log(`ok ${done.size} jobs completed once each with the right result; per worker: ${byWorker.join(' ')}`);
  console.log(`ok ${flaky} jobs failed their first attempt and completed on the second`);
  if (lateness.length !== delayed) fail(`${lateness.length} delayed jobs processed, expected ${delayed}`);
  const early = Math.min(...lateness), late = Math.max(...lateness);
  if (early < -50) fail(`a delayed job ran ${-early} ms before its delay was up`);
  if (late > LATE_MS) {
    fail(`a delayed job ran ${late} ms after its delay (more than ${LATE_MS} ms: the PUBLISH on ` +
      `${prefix}:${name}:delayed did not reach the subscriber?)`);
  }
  console.log(`ok ${delayed} delayed jobs ran after their delay, at most ${late} ms late`);
  await withTimeout(allGlobal, 10000,
    `global:completed events (seen: ${globalSeen.map((s) => s.size).join(' ')} of ${JOBS} each)`)
    .catch((e) => fail(e.message));
  console.log(`ok each of ${WORKERS} queue instances saw ${JOBS} global:completed events`);
  const counts = await withTimeout(queues[0].getJobCounts(), 5000, 'getJobCounts');
  if (counts.completed !== JOBS || counts.failed || counts.waiting || counts.delayed || counts.active) {
    fail(`job counts ${JSON.stringify(counts)}`);
  }
  console.log(`ok job counts ${JSON.stringify(counts)}`);
  console.log(`bull: ${JOBS} jobs, ${WORKERS} queue instances x concurrency ${CONCURRENCY}, ` +
    `${((Date.now() - t0) / 1000).toFixed(2)} s`);
  await withTimeout(queues[0].obliterate({ force: true }), 10000, 'obliterate').catch((e) => fail(e.message));
  await withTimeout(Promise.all(queues.map((q) => q.close())), 10000, 'Queue.close').catch((e) => fail(e.message));
  clearTimeout(watchdog);
}

main().then(() => process.exit(0), (err) => fail(err && err.message ? err.message : err));
