// Prints a sandboxq project's events, one JSON object per line, read
// straight from Redis with node-redis (no sandboxq code involved).
//
//   node events.mjs <namespace> <name> [--from ID] [--follow] [--count N]
//   node events.mjs <namespace> <name> --subscribe [--count N]
//   node events.mjs --all --subscribe [--count N]
//
// REDIS_URL (default redis://127.0.0.1:6379) picks the server and database.
//
// Stream mode reads the capped stream sandboxq:{ns/name}:events with XREAD:
// history after --from (default 0: all that is retained), then, with
// --follow, new events as they come (BLOCK). Each entry has one field,
// "event", the event JSON without its id; the entry id is the event id.
//
// Subscribe mode listens on the pub/sub channel of the project (same name
// as the stream) or, with --all, on sandboxq:events (every project). Each
// message is the event JSON with its id. Pub/sub has no history: use the
// stream to catch up, then follow it.
//
// With --count N it exits after printing N events. In subscribe mode it
// writes "subscribed" to stderr once the subscription is in place.

import { createClient } from 'redis';

function usage(msg) {
  if (msg) console.error(msg);
  console.error('usage: node events.mjs <namespace> <name> [--from ID] [--follow] [--count N]\n' +
    '       node events.mjs <namespace> <name> --subscribe [--count N]\n' +
    '       node events.mjs --all --subscribe [--count N]');
  process.exit(2);
}

const args = process.argv.slice(2);
const opts = { from: '0', follow: false, subscribe: false, all: false, count: Infinity };
const positional = [];
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  if (a === '--from') opts.from = args[++i] ?? usage('--from needs an id');
  else if (a === '--follow') opts.follow = true;
  else if (a === '--subscribe') opts.subscribe = true;
  else if (a === '--all') opts.all = true;
  else if (a === '--count') {
    opts.count = Number(args[++i]);
    if (!Number.isInteger(opts.count) || opts.count < 1) usage('--count needs a positive integer');
  } else if (a.startsWith('--')) usage(`unknown option ${a}`);
  else positional.push(a);
}
if (opts.all ? positional.length !== 0 || !opts.subscribe : positional.length !== 2) usage();

// The project's Redis Cluster hash tag: "{<namespace>/<name>}", with "%"
// and "/" of the namespace percent-encoded; an empty namespace is "default".
function projectTag(namespace, name) {
  const ns = (namespace || 'default').replaceAll('%', '%25').replaceAll('/', '%2F');
  return `{${ns}/${name}}`;
}

const key = opts.all ? 'sandboxq:events' : `sandboxq:${projectTag(positional[0], positional[1])}:events`;
const client = createClient({ url: process.env.REDIS_URL || 'redis://127.0.0.1:6379' });
client.on('error', (err) => {
  console.error('redis:', err.message);
  process.exit(1);
});
await client.connect();

let printed = 0;
function print(event) {
  process.stdout.write(JSON.stringify(event) + '\n');
  printed++;
  return printed >= opts.count;
}

if (opts.subscribe) {
  const sub = client.duplicate();
  sub.on('error', (err) => {
    console.error('redis:', err.message);
    process.exit(1);
  });
  await sub.connect();
  let done;
  const finished = new Promise((resolve) => { done = resolve; });
  await sub.subscribe(key, (message) => {
    if (print(JSON.parse(message))) done();
  });
  console.error('subscribed');
  await finished;
  await sub.quit();
} else {
  let last = opts.from;
  for (;;) {
    const res = await client.xRead(
      { key, id: last },
      opts.follow ? { BLOCK: 5000, COUNT: 100 } : { COUNT: 100 },
    );
    const messages = res ? res[0].messages : [];
    if (messages.length === 0 && !opts.follow) break;
    let enough = false;
    for (const m of messages) {
      last = m.id;
      const event = { id: m.id, ...JSON.parse(m.message.event) };
      if (print(event)) {
        enough = true;
        break;
      }
    }
    if (enough) break;
  }
}
await client.quit();
