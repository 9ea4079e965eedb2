'use strict';
// test/clients/checks.js -- the check harness compat.js and pubsub.js share:
// one `ok LIB CHECK` or `FAIL LIB CHECK: ERROR` line per check (what
// test/clients.bats shows when a test fails), each check bounded in time so
// that a library retrying forever fails it instead of hanging the run.
//
//   const T = require('./checks')(lib, STEP_MS);
//   await T.check('name', async () => { T.eq(got, want, 'what'); });
//   T.fail('name', 'why')      a failure found outside a check
//   await T.closeNodeRedis([client, ...])
//   process.exit(T.failed() ? 1 : 0);

module.exports = function checks(lib, stepMs) {
  let fails = 0;

  // An error as one line of text.
  function oneLine(e) {
    const msg = e && e.message ? e.message : String(e);
    return msg.replace(/\s+/g, ' ').trim();
  }

  // PROMISE, or a rejection naming WHAT after MS milliseconds.
  function withTimeout(promise, ms, what) {
    let t;
    return Promise.race([
      promise,
      new Promise((_, reject) => {
        t = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
      }),
    ]).finally(() => clearTimeout(t));
  }

  // Run one check: FN throws (or rejects) on failure.
  async function check(name, fn) {
    try {
      await withTimeout(Promise.resolve().then(fn), stepMs, name);
      console.log(`ok ${lib} ${name}`);
      return true;
    } catch (e) {
      fail(name, oneLine(e));
      return false;
    }
  }

  function fail(name, why) {
    fails++;
    console.log(`FAIL ${lib} ${name}: ${why}`);
  }

  function eq(got, want, what) {
    const g = JSON.stringify(got), w = JSON.stringify(want);
    if (g !== w) throw new Error(`${what}: got ${g}, want ${w}`);
  }

  function assert(cond, msg) {
    if (!cond) throw new Error(msg);
  }

  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  // Close node-redis CLIENTS: politely when ready (bounded), else at once.
  async function closeNodeRedis(clients) {
    for (const x of clients) {
      try {
        if (x.isReady) await withTimeout(x.close(), 2000, 'close');
        else x.destroy();
      } catch (_) {
        try { x.destroy(); } catch (__) { /* closed already */ }
      }
    }
  }

  return { oneLine, withTimeout, check, fail, eq, assert, sleep, closeNodeRedis,
           failed: () => fails };
};
