#!/usr/bin/env node
// compat.js -- the Node client libraries against shardproxy (or any Redis),
// used as an application would use them: DEFAULT options, nothing tuned.
//
// Usage: node compat.js LIB HOST PORT
//   LIB = node-redis        redis (node-redis) 6.3.1, createClient({ url })
//         node-redis-resp2  the same with { RESP: 2 }
//         ioredis           ioredis 6.0.0, new Redis({ host, port })
//
// What the libraries send on connect (pinned versions, read from their
// source and seen on the wire), all pipelined ahead of the first command:
//   node-redis 6.3.1 (RESP 3 is its default: DEFAULT_RESP = 3):
//       HELLO 3
//       SELECT n                          (only when database != 0)
//       CLIENT SETINFO LIB-VER 6.3.1      (error ignored)
//       CLIENT SETINFO LIB-NAME node-redis (error ignored)
//       CLIENT MAINT_NOTIFICATIONS ON moving-endpoint-type external-ip
//                                         (RESP3 only, error ignored; seen
//                                         so for HOST 127.0.0.1)
//     A failed HELLO 3 (-NOPROTO) fails the connection: node-redis does not
//     fall back to RESP2, it reconnects and tries HELLO 3 again, forever.
//   node-redis with { RESP: 2 }: no HELLO; [SELECT n], the two CLIENT SETINFO.
//   ioredis 6.0.0 (protocol: 3 is its default; command names in lower case):
//       hello 3, [select n], client SETINFO LIB-VER 6.0.0, client SETINFO
//       LIB-NAME ioredis (SETINFO errors ignored), then info (the ready check).
//     On -NOPROTO (or an unknown HELLO) it sends the handshake again without
//     HELLO and goes on in RESP2.  A failed SELECT is only emitted as an
//     'error' event: the client goes on, in db 0.
//
// Checks: connect, SET/GET, GET of a missing key -> null, db 1 isolation in a
// second client, scripts (one key and zero keys; each script's text carries a
// per-run tag, so the first call's EVALSHA surely gets NOSCRIPT and falls back
// to EVAL, the second is served by EVALSHA), the SCAN helper over 500 keys
// with MATCH, HGETALL as an object, ZADD/ZRANGE WITHSCORES, a pipeline and a
// MULTI (one hash tag).  One line per check, `ok LIB CHECK` or
// `FAIL LIB CHECK: ERROR`; lines starting with `#` are notes (client error
// events).  Exit 0 all passed, 1 some failed, 2 usage or the 20 s limit hit.
'use strict';

const LIBS = ['node-redis', 'node-redis-resp2', 'ioredis'];
const [lib, host, portArg] = process.argv.slice(2);
if (!LIBS.includes(lib) || !host || !/^\d+$/.test(portArg || '')) {
  console.error(`usage: node compat.js ${LIBS.join('|')} HOST PORT`);
  process.exit(2);
}
const port = Number(portArg);

const GLOBAL_MS = 20000;
const STEP_MS = 4000; // one check; a library's own retries can take forever
const globalTimer = setTimeout(() => {
  console.log(`FAIL ${lib} global-timeout: not finished within ${GLOBAL_MS / 1000} s`);
  process.exit(2);
}, GLOBAL_MS);

// Keys of this run: unique, so runs against one server never collide.
const RUN = `${process.pid}.${Date.now().toString(36)}`;
const P = `compat:${lib}:${RUN}`;
const SCAN_N = 500;

const T = require('./checks')(lib, STEP_MS); // the ok/FAIL lines, bounded checks
const { oneLine, withTimeout, check, eq, assert } = T;

// A reply that must be a plain object (not an array, not a Map).
function plainObject(reply, want, what) {
  assert(reply !== null && typeof reply === 'object' && !Array.isArray(reply) && !(reply instanceof Map),
    `${what}: not a plain object: ${Object.prototype.toString.call(reply)} ${JSON.stringify(reply)}`);
  const sorted = (o) => Object.keys(o).sort().map((k) => [k, o[k]]);
  eq(sorted(reply), sorted(want), what);
}

// The SCAN helper's keys: each expected key once at least, nothing else.
function checkScanned(seen, total) {
  const want = new Set();
  for (let i = 0; i < SCAN_N; i++) want.add(`${P}:scan:${i}`);
  const missing = [...want].filter((k) => !seen.has(k));
  const extra = [...seen].filter((k) => !want.has(k));
  assert(missing.length === 0 && extra.length === 0,
    `${seen.size} distinct keys (${total} returned): ${missing.length} missing` +
    (missing.length ? ` (e.g. ${missing.slice(0, 3).join(' ')})` : '') +
    `, ${extra.length} not matching` + (extra.length ? ` (e.g. ${extra.slice(0, 3).join(' ')})` : ''));
}

// Client 'error' events: noted once per distinct message (a reconnect loop
// repeats them).
function noter(who) {
  const seen = new Set();
  return (e) => {
    const m = oneLine(e);
    if (seen.has(m) || seen.size > 5) return;
    seen.add(m);
    console.log(`# ${lib} ${who} error event: ${m}`);
  };
}

const SCRIPT_1KEY = `-- compat ${RUN} one key\n` +
  "redis.call('SET', KEYS[1], ARGV[1]) return redis.call('STRLEN', KEYS[1])";
const SCRIPT_0KEY = `-- compat ${RUN} zero keys\nreturn 'hello ' .. ARGV[1]`;
const SCRIPT_KEYS = [0, 1, 2, 3, 4, 5].map((i) => `${P}:script:${i}`); // several backends

// ------------------------------------------------------------- node-redis

async function nodeRedis() {
  const { createClient, defineScript } = require('redis');
  // Default options: RESP 3 (HELLO 3).  node-redis-resp2 only adds RESP: 2.
  const extra = lib === 'node-redis-resp2' ? { RESP: 2 } : {};
  const scripts = {
    setLen: defineScript({
      NUMBER_OF_KEYS: 1,
      SCRIPT: SCRIPT_1KEY,
      parseCommand(parser, key, value) {
        parser.pushKey(key);
        parser.push(value);
      },
      transformReply: (reply) => reply,
    }),
    hello: defineScript({
      NUMBER_OF_KEYS: 0,
      SCRIPT: SCRIPT_0KEY,
      parseCommand(parser, who) {
        parser.push(who);
      },
      transformReply: (reply) => reply,
    }),
  };
  const clients = [];
  const open = async (url, who) => {
    const c = createClient({ url, scripts, ...extra });
    c.on('error', noter(who));
    clients.push(c);
    await c.connect();
    return c;
  };
  let c = null, c1 = null;
  try {
    await check('connect', async () => {
      c = await open(`redis://${host}:${port}`, 'db0 client');
      eq(await c.ping(), 'PONG', 'PING');
    });
    if (!c) {
      T.fail('remaining-checks', `not run, no connection`);
      return;
    }
    await check('set-get', async () => {
      eq(await c.set(`${P}:k`, 'v1'), 'OK', 'SET');
      eq(await c.get(`${P}:k`), 'v1', 'GET');
    });
    await check('get-missing-null', async () => {
      eq(await c.get(`${P}:missing`), null, 'GET of a missing key');
    });
    await check('db1-isolation', async () => {
      c1 = await open(`redis://${host}:${port}/1`, 'db1 client');
      eq(await c1.set(`${P}:db1only`, 'one'), 'OK', 'SET in db 1');
      eq(await c1.get(`${P}:db1only`), 'one', 'GET in db 1');
      eq(await c.get(`${P}:db1only`), null, 'GET in db 0 of the key written in db 1');
      eq(await c1.get(`${P}:k`), null, 'GET in db 1 of the key written in db 0');
    });
    await check('script-one-key', async () => {
      for (const round of [1, 2]) { // 1: EVALSHA -> NOSCRIPT -> EVAL; 2: EVALSHA
        for (const k of SCRIPT_KEYS) {
          eq(await c.setLen(k, `r${round}-${k}`), `r${round}-${k}`.length, `script on ${k}, call ${round}`);
        }
      }
      eq(await c.get(SCRIPT_KEYS[0]), `r2-${SCRIPT_KEYS[0]}`, 'GET of the key the script set');
    });
    await check('script-zero-keys', async () => {
      eq(await c.hello('one'), 'hello one', 'zero-key script, call 1');
      eq(await c.hello('two'), 'hello two', 'zero-key script, call 2');
    });
    await check('scan-iterator', async () => {
      const sets = [];
      for (let i = 0; i < SCAN_N; i++) sets.push(c.set(`${P}:scan:${i}`, String(i)));
      await Promise.all(sets);
      const seen = new Set();
      let total = 0;
      // node-redis 5+: scanIterator yields a batch (array) of keys per SCAN reply
      for await (const keys of c.scanIterator({ MATCH: `${P}:scan:*`, COUNT: 100 })) {
        for (const k of keys) seen.add(String(k));
        total += keys.length;
      }
      checkScanned(seen, total);
    });
    await check('hgetall-object', async () => {
      await c.hSet(`${P}:h`, { f1: 'v1', f2: 'v2', n: '3' });
      plainObject(await c.hGetAll(`${P}:h`), { f1: 'v1', f2: 'v2', n: '3' }, 'HGETALL');
      plainObject(await c.hGetAll(`${P}:nohash`), {}, 'HGETALL of a missing key');
    });
    await check('zadd-zrange-withscores', async () => {
      eq(await c.zAdd(`${P}:z`, [{ score: 1, value: 'a' }, { score: 2.5, value: 'b' }, { score: -3, value: 'c' }]),
        3, 'ZADD');
      eq(await c.zRangeWithScores(`${P}:z`, 0, -1),
        [{ value: 'c', score: -3 }, { value: 'a', score: 1 }, { value: 'b', score: 2.5 }], 'ZRANGE WITHSCORES');
    });
    await check('pipeline', async () => {
      const a = `${P}:pa`, b = `${P}:pb`;
      eq(await c.multi().set(a, '1').set(b, '2').mGet([a, b]).incr(a).get(`${P}:missing`).execAsPipeline(),
        ['OK', 'OK', ['1', '2'], 2, null], 'pipeline replies');
    });
    await check('multi', async () => {
      const a = `{${P}}:ma`, b = `{${P}}:mb`; // one hash tag: one backend
      eq(await c.multi().set(a, 'x').incr(b).get(a).exec(), ['OK', 1, 'x'], 'MULTI/EXEC replies');
    });
    // best effort: leave nothing behind
    await withTimeout((async () => {
      const keys = [`${P}:k`, `${P}:h`, `${P}:z`, `${P}:pa`, `${P}:pb`, `{${P}}:ma`, `{${P}}:mb`, ...SCRIPT_KEYS];
      for (let i = 0; i < SCAN_N; i++) keys.push(`${P}:scan:${i}`);
      await c.del(keys);
      if (c1 && c1.isReady) await c1.del(`${P}:db1only`);
    })(), STEP_MS, 'cleanup').catch(() => {});
  } finally {
    await T.closeNodeRedis(clients);
  }
}

// ---------------------------------------------------------------- ioredis

async function ioredis() {
  const Redis = require('ioredis');
  const clients = [];
  const open = async (opts, who) => {
    const r = new Redis({ host, port, ...opts }); // defaults: protocol 3, db 0
    r.on('error', noter(who));
    clients.push(r);
    r.defineCommand('setLen', { numberOfKeys: 1, lua: SCRIPT_1KEY });
    r.defineCommand('hello3', { numberOfKeys: 0, lua: SCRIPT_0KEY });
    await new Promise((resolve, reject) => {
      r.once('ready', resolve);
      r.once('end', () => reject(new Error('connection ended')));
    });
    return r;
  };
  let r = null, r1 = null;
  try {
    await check('connect', async () => {
      r = await open({}, 'db0 client');
      eq(await r.ping(), 'PONG', 'PING');
    });
    if (!r) {
      T.fail('remaining-checks', `not run, no connection`);
      return;
    }
    await check('set-get', async () => {
      eq(await r.set(`${P}:k`, 'v1'), 'OK', 'SET');
      eq(await r.get(`${P}:k`), 'v1', 'GET');
    });
    await check('get-missing-null', async () => {
      eq(await r.get(`${P}:missing`), null, 'GET of a missing key');
    });
    await check('db1-isolation', async () => {
      r1 = await open({ db: 1 }, 'db1 client');
      eq(await r1.set(`${P}:db1only`, 'one'), 'OK', 'SET in db 1');
      eq(await r1.get(`${P}:db1only`), 'one', 'GET in db 1');
      eq(await r.get(`${P}:db1only`), null, 'GET in db 0 of the key written in db 1');
      eq(await r1.get(`${P}:k`), null, 'GET in db 1 of the key written in db 0');
    });
    await check('script-one-key', async () => {
      // ioredis sends EVAL on a connection's first use of a script, EVALSHA
      // after it, and EVAL again on NOSCRIPT (another backend, a flush).
      for (const round of [1, 2]) {
        for (const k of SCRIPT_KEYS) {
          eq(await r.setLen(k, `r${round}-${k}`), `r${round}-${k}`.length, `script on ${k}, call ${round}`);
        }
      }
      eq(await r.get(SCRIPT_KEYS[0]), `r2-${SCRIPT_KEYS[0]}`, 'GET of the key the script set');
    });
    await check('script-zero-keys', async () => {
      eq(await r.hello3('one'), 'hello one', 'zero-key script, call 1');
      eq(await r.hello3('two'), 'hello two', 'zero-key script, call 2');
    });
    await check('scan-stream', async () => {
      const pl = r.pipeline();
      for (let i = 0; i < SCAN_N; i++) pl.set(`${P}:scan:${i}`, String(i));
      const res = await pl.exec();
      const bad = res.filter(([err]) => err);
      assert(bad.length === 0, `writing the keys: ${bad.length} errors, e.g. ${bad.length && oneLine(bad[0][0])}`);
      const seen = new Set();
      let total = 0;
      await new Promise((resolve, reject) => {
        const s = r.scanStream({ match: `${P}:scan:*`, count: 100 });
        s.on('data', (keys) => {
          for (const k of keys) seen.add(String(k));
          total += keys.length;
        });
        s.on('end', resolve);
        s.on('error', reject);
      });
      checkScanned(seen, total);
    });
    await check('hgetall-object', async () => {
      await r.hset(`${P}:h`, { f1: 'v1', f2: 'v2', n: '3' });
      plainObject(await r.hgetall(`${P}:h`), { f1: 'v1', f2: 'v2', n: '3' }, 'HGETALL');
      plainObject(await r.hgetall(`${P}:nohash`), {}, 'HGETALL of a missing key');
    });
    await check('zadd-zrange-withscores', async () => {
      eq(await r.zadd(`${P}:z`, 1, 'a', 2.5, 'b', -3, 'c'), 3, 'ZADD');
      eq(await r.zrange(`${P}:z`, 0, -1, 'WITHSCORES'), ['c', '-3', 'a', '1', 'b', '2.5'], 'ZRANGE WITHSCORES');
    });
    await check('pipeline', async () => {
      const a = `${P}:pa`, b = `${P}:pb`;
      eq(await r.pipeline().set(a, '1').set(b, '2').mget(a, b).incr(a).get(`${P}:missing`).exec(),
        [[null, 'OK'], [null, 'OK'], [null, ['1', '2']], [null, 2], [null, null]], 'pipeline replies');
    });
    await check('multi', async () => {
      const a = `{${P}}:ma`, b = `{${P}}:mb`; // one hash tag: one backend
      eq(await r.multi().set(a, 'x').incr(b).get(a).exec(), [[null, 'OK'], [null, 1], [null, 'x']],
        'MULTI/EXEC replies');
    });
    await withTimeout((async () => {
      const keys = [`${P}:k`, `${P}:h`, `${P}:z`, `${P}:pa`, `${P}:pb`, `{${P}}:ma`, `{${P}}:mb`, ...SCRIPT_KEYS];
      for (let i = 0; i < SCAN_N; i++) keys.push(`${P}:scan:${i}`);
      await r.del(...keys);
      if (r1 && r1.status === 'ready') await r1.del(`${P}:db1only`);
    })(), STEP_MS, 'cleanup').catch(() => {});
  } finally {
    for (const x of clients) {
      try {
        if (x.status === 'ready') await withTimeout(x.quit(), 2000, 'quit');
      } catch (_) { /* disconnected below */ }
      x.disconnect();
    }
  }
}

(async () => {
  if (lib === 'ioredis') await ioredis();
  else await nodeRedis();
  clearTimeout(globalTimer);
  process.exit(T.failed() ? 1 : 0);
})().catch((e) => {
  console.log(`FAIL ${lib} internal: ${e && e.stack ? e.stack.split('\n').slice(0, 3).join(' | ') : e}`);
  process.exit(1);
});
