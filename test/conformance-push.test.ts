/**
 * The source conformance suite of `spate/testing`, run against the push sources: HTTP,
 * WebSocket and MQTT (in-process broker). A check's input is the source's write-ahead log; records
 * added while a reader listens are sent through its endpoint (a POST, a WebSocket message, a QoS 1
 * PUBLISH) and acknowledged before `append` returns — the path a client takes; records added while
 * no reader listens (before the first opens, between a crash and a restore) are written to the log
 * directly, as the endpoint writes them.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterAll, describe, it } from 'vitest';
import { WebSocket } from 'ws';
import { type EndpointAddress, HttpSource, MqttSource, type Source, WebSocketSource } from '../src/index.ts';
import { EntryKind, encodeEntry } from '../src/connectors/push/entry.ts';
import { WriteAheadLog } from '../src/connectors/wal/write-ahead-log.ts';
import { type SourceHarness, sourceConformance } from '../src/testing/index.ts';

interface Item {
  readonly i: number;
}

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

type PushTestSource = Source<Item> & { listening(): Promise<EndpointAddress> };

interface Input {
  readonly dir: string;
  readonly wal: WriteAheadLog;
  count: number;
  /** The source object built last (the one a reader may be listening with). */
  latest: PushTestSource | null;
}

/** The address the latest source listens on, or null when none listens now. */
async function listeningNow(input: Input): Promise<EndpointAddress | null> {
  if (input.latest === null) return null;
  return Promise.race([input.latest.listening(), Promise.resolve(null)]);
}

/** A harness for a push source: `make` builds it on a log directory, `send` sends payloads to a listening endpoint and resolves once they are acknowledged. */
function harness(make: (dir: string) => PushTestSource, send: (address: EndpointAddress, payloads: string[]) => Promise<void>): SourceHarness<Item, Input> {
  const add = async (input: Input, payloads: string[]): Promise<void> => {
    const address = await listeningNow(input);
    if (address !== null) await send(address, payloads);
    else await input.wal.append(payloads.map((p) => encodeEntry(EntryKind.Record, Date.now(), '', Buffer.from(p))));
  };
  return {
    bounded: false,
    create: async (n) => {
      const dir = mkdtempSync(join(tmpdir(), 'spate-conformance-push-'));
      dirs.push(dir);
      const input: Input = { dir, wal: await WriteAheadLog.open(join(dir, 'wal')), count: 0, latest: null };
      await add(input, Array.from({ length: n }, (_, i) => JSON.stringify({ i })));
      input.count = n;
      return input;
    },
    source: (input) => (input.latest = make(join(input.dir, 'wal'))),
    append: async (input, n) => {
      await add(
        input,
        Array.from({ length: n }, (_, k) => JSON.stringify({ i: input.count + k })),
      );
      input.count += n;
    },
    appendBad: (input) => add(input, ['{ not json']),
    record: (i) => ({ i }),
    destroy: (input) => input.wal.close(),
  };
}

describe('source conformance: HttpSource', () => {
  const h = harness(
    (dir) => new HttpSource<Item>({ port: 0, dir }),
    async (address, payloads) => {
      // One NDJSON request per call: its lines are appended in order.
      const res = await fetch(address.url, { method: 'POST', body: payloads.join('\n'), headers: { 'Content-Type': 'application/x-ndjson' } });
      await res.arrayBuffer();
      if (res.status !== 200 && res.status !== 207) throw new Error(`POST answered ${res.status}`);
    },
  );
  for (const check of sourceConformance(h, { prefix: 'http' })) it(check.name, check.run);
});

describe('source conformance: WebSocketSource', () => {
  const h = harness(
    (dir) => new WebSocketSource<Item>({ port: 0, dir }),
    async (address, payloads) => {
      const ws = new WebSocket(address.url);
      await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
      const answered = new Promise((resolve) => ws.once('message', resolve));
      ws.send(payloads.join('\n'));
      await answered;
      ws.close();
    },
  );
  for (const check of sourceConformance(h, { prefix: 'websocket' })) it(check.name, check.run);
});

describe('source conformance: MqttSource (in-process broker)', () => {
  const h = harness(
    (dir) => new MqttSource<Item>({ port: 0, dir, format: 'auto' }),
    async (address, payloads) => {
      const client = await mqtt.connectAsync(address.url, { reconnectPeriod: 0 });
      // In order: each publish waits for its PUBACK.
      for (const p of payloads) await client.publishAsync('items', p, { qos: 1 });
      await client.endAsync();
    },
  );
  for (const check of sourceConformance(h, { prefix: 'mqtt' })) it(check.name, check.run);
});
