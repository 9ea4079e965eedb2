#!/usr/bin/env node
// txn.js -- transactions through shardproxy with the Node client libraries.
//
// Usage: node txn.js PORT KEY1 KEY2 KEY3
//
// KEY1 and KEY2 live on one backend, KEY3 on another.  For ioredis and for
// node-redis (RESP2: its RESP3 default is not served yet): multi() of SET
// KEY1 and INCR KEY2 returns both results; multi() of SET KEY1 and INCR KEY3
// fails as a whole and applies nothing.  Prints "ok  ..." / "FAIL ..." per
// check; exit status 1 when any failed.
'use strict';
const Redis = require('ioredis');
const { createClient } = require('redis');

const [port, key1, key2, key3] = process.argv.slice(2);
let fails = 0;
function check(what, got, want) {
  const g = JSON.stringify(got), w = JSON.stringify(want);
  if (g !== w) fails++;
  console.log(`${g === w ? 'ok  ' : 'FAIL'} ${what}: got ${g}${g === w ? '' : `, want ${w}`}`);
}

async function rejection(promise) {
  try {
    return `resolved: ${JSON.stringify(await promise)}`;
  } catch (e) {
    return e.message.split(' ')[0]; // the error code: CROSSSLOT, EXECABORT
  }
}

async function ioredis() {
  const r = new Redis(Number(port), '127.0.0.1', { maxRetriesPerRequest: 1 });
  check('ioredis multi() on one backend', await r.multi().set(key1, 'io').incr(key2).exec(),
        [[null, 'OK'], [null, 1]]);
  check('ioredis multi() on two backends', await rejection(r.multi().set(key1, 'x').incr(key3).exec()),
        'EXECABORT');
  check('ioredis: nothing of it applied', [await r.get(key1), await r.exists(key3)], ['io', 0]);
  r.disconnect();
}

async function nodeRedis() {
  const c = createClient({ url: `redis://127.0.0.1:${port}`, RESP: 2 });
  c.on('error', (e) => console.log(`node-redis error: ${e.message}`));
  await c.connect();
  check('node-redis multi() on one backend', await c.multi().set(key1, 'nr').incr(key2).exec(),
        ['OK', 2]);
  check('node-redis multi() on two backends',
        await rejection(c.multi().set(key1, 'y').incr(key3).exec()), 'CROSSSLOT');
  check('node-redis: nothing of it applied', [await c.get(key1), await c.exists(key3)], ['nr', 0]);
  await c.quit();
}

(async () => {
  await ioredis();
  await nodeRedis();
  process.exit(fails ? 1 : 0);
})().catch((e) => {
  console.log(`FAIL ${e.stack}`);
  process.exit(1);
});
