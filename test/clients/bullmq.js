// bullmq.js -- BullMQ, unchanged, through shardproxy: a job queue with
// prefix {bull} (so every key of a queue lives on one backend, as BullMQ
// documents for Redis Cluster), JOBS jobs (one in ten delayed by 300 ms)
// processed by WORKERS workers, with a QueueEvents listener counting the
// completions.  Every job must complete exactly once with its result, and
// QueueEvents must see every completion.
//
//   node bullmq.js HOST PORT [JOBS] [WORKERS]
//
// Prints `ok ...` lines and a summary, or `FAIL ...` and exits 1.  It runs
// against a plain redis-server the same way (node bullmq.js 127.0.0.1 6379).
'use strict';

const { Queue, Worker, QueueEvents } = require('bullmq');

const [host, portArg, jobsArg, workersArg] = process.argv.slice(2);
const connection = { host, port: Number(portArg), maxRetriesPerRequest: null };
const JOBS = Number(jobsArg || 1000);
const WORKERS = Number(workersArg || 4);
const prefix = '{bull}';
const name = `q${process.pid}`;

function fail(msg) {
  console.log(`FAIL ${msg}`);
  process.exit(1);
}

async function main() {
  const t0 = Date.now();
  const watchdog = setTimeout(() => fail(`not done after 120 s`), 120000);
  const events = new QueueEvents(name, { connection, prefix });
  await events.waitUntilReady();
  const queue = new Queue(name, { connection, prefix });
  const seen = new Map(); // job id -> result, from the workers
  let eventsCompleted = 0;
  let delayedDone = 0;
  const allEvents = new Promise((resolve) => {
    events.on('completed', () => {
      eventsCompleted++;
      if (eventsCompleted === JOBS) resolve();
    });
  });

  const workers = [];
  const allDone = new Promise((resolve, reject) => {
    for (let w = 0; w < WORKERS; w++) {
      const worker = new Worker(name, async (job) => {
        if (job.opts.delay) delayedDone++;
        return { doubled: job.data.n * 2, by: w };
      }, { connection, prefix, concurrency: 5 });
      worker.on('completed', (job, result) => {
        if (seen.has(job.id)) reject(new Error(`job ${job.id} completed twice`));
        if (result.doubled !== job.data.n * 2) reject(new Error(`job ${job.id}: wrong result`));
        seen.set(job.id, result);
        if (seen.size === JOBS) resolve();
      });
      worker.on('failed', (job, err) => reject(new Error(`job ${job && job.id} failed: ${err}`)));
      worker.on('error', (err) => reject(new Error(`worker ${w}: ${err}`)));
      workers.push(worker);
    }
  });

  const batch = [];
  for (let n = 0; n < JOBS; n++) {
    batch.push({ name: 'double', data: { n }, opts: n % 10 === 0 ? { delay: 300 } : {} });
  }
  for (let i = 0; i < batch.length; i += 100) await queue.addBulk(batch.slice(i, i + 100));
  console.log(`ok added ${JOBS} jobs (${JOBS / 10} delayed) to ${prefix}:${name}`);

  await allDone;
  const byWorker = new Array(WORKERS).fill(0);
  for (const r of seen.values()) byWorker[r.by]++;
  console.log(`ok ${seen.size} jobs completed once each with the right result; per worker: ${byWorker.join(' ')}`);
  if (delayedDone !== JOBS / 10) fail(`${delayedDone} delayed jobs processed, expected ${JOBS / 10}`);
  console.log(`ok ${delayedDone} delayed jobs processed after their delay`);
  await allEvents;
  console.log(`ok QueueEvents saw ${eventsCompleted} completions`);
  const counts = await queue.getJobCounts('completed', 'failed', 'wait', 'delayed', 'active');
  if (counts.completed !== JOBS || counts.failed || counts.wait || counts.delayed || counts.active) {
    fail(`job counts ${JSON.stringify(counts)}`);
  }
  console.log(`ok job counts ${JSON.stringify(counts)}`);
  console.log(`bullmq: ${JOBS} jobs, ${WORKERS} workers, ${((Date.now() - t0) / 1000).toFixed(2)} s`);
  await Promise.all(workers.map((w) => w.close()));
  await queue.obliterate({ force: true });
  await queue.close();
  await events.close();
  clearTimeout(watchdog);
}

main().catch((err) => fail(err && err.stack ? err.stack : String(err)));
