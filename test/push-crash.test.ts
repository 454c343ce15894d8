/**
 * Push ingestion across kill -9: `spate run` of a pipeline module that takes records over HTTP and
 * MQTT (through its in-process broker, or from the real Mosquitto) into a JSONL sink with
 * checkpoints; clients send numbered records and note which were acknowledged; the job is
 * SIGKILLed mid-stream and started again. Every acknowledged record must be in the committed
 * output exactly once.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, describe, expect, it } from 'vitest';
import type { Pushed } from './fixtures/push-module.ts';
import { freePorts } from './support/net.ts';

const bin = join(import.meta.dirname, '..', 'bin', 'spate.js');
const fixture = join(import.meta.dirname, 'fixtures', 'push-module.ts');
const holdFixture = join(import.meta.dirname, 'fixtures', 'mqtt-hold-module.ts');
const dir = mkdtempSync(join(tmpdir(), 'spate-push-crash-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const MOSQUITTO = process.env.SPATE_MQTT_URL ?? 'mqtt://127.0.0.1:1883';

interface Run {
  readonly child: ChildProcess;
  readonly stderr: () => string;
  readonly exit: Promise<number | null>;
}

function run(args: string[]): Run {
  const child = spawn(process.execPath, [bin, 'run', ...args], { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exit = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, stderr: () => err, exit };
}

async function until(cond: () => boolean, what: string, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The URL a step's endpoint listens on, from the job's log. */
async function endpoint(r: Run, step: string): Promise<string> {
  const pattern = new RegExp(`step '${step}': \\w+ listening on (\\S+)`);
  await until(() => pattern.test(r.stderr()) || r.child.exitCode !== null, `step ${step} to listen`);
  const m = pattern.exec(r.stderr());
  if (m === null) throw new Error(`the job ended before listening:\n${r.stderr()}`);
  return m[1]!;
}

function rows(path: string): Pushed[] {
  if (!existsSync(path)) return [];
  const text = readFileSync(path, 'utf8');
  return text.length === 0 ? [] : text.trimEnd().split('\n').map((l) => JSON.parse(l) as Pushed);
}

/** Counts of each record in the output. */
function counts(path: string): Map<string, number> {
  const c = new Map<string, number>();
  for (const r of rows(path)) c.set(`${r.src}${r.n}`, (c.get(`${r.src}${r.n}`) ?? 0) + 1);
  return c;
}

interface Batch {
  readonly key: string;
  readonly from: number;
  readonly body: string;
}

/**
 * Sends NDJSON batches of numbered records, each under an Idempotency-Key, until stopped; notes
 * what was acknowledged. A batch whose answer never came (the job was killed) is kept in `unsure`
 * and sent again, under its key, to the next run: first thing.
 */
function httpSender(url: string, next: { n: number }, acked: Set<string>, unsure: Batch[]): { stop: () => Promise<void> } {
  let stopped = false;
  const send = async (batch: Batch): Promise<boolean> => {
    try {
      for (;;) {
        const res = await fetch(url, { method: 'POST', body: batch.body, headers: { 'Content-Type': 'application/x-ndjson', 'Idempotency-Key': batch.key } });
        await res.arrayBuffer();
        if (res.status === 200) {
          for (let i = 0; i < 50; i++) acked.add(`h${batch.from + i}`);
          return true;
        }
        if (res.status !== 429 && res.status !== 503) throw new Error(`unexpected status ${res.status}`);
        await new Promise((r) => setTimeout(r, 50)); // pushed back: the same batch again
      }
    } catch (error) {
      if ((error as Error).message.startsWith('unexpected')) throw error;
      // The job is gone (killed): stored or not, we cannot know.
      unsure.push(batch);
      return false;
    }
  };
  const loop = (async () => {
    for (const batch of unsure.splice(0)) if (!(await send(batch))) return;
    while (!stopped) {
      const from = next.n;
      next.n += 50;
      const body = Array.from({ length: 50 }, (_, i) => JSON.stringify({ src: 'h', n: from + i })).join('\n');
      if (!(await send({ key: `b${from}`, from, body }))) return;
    }
  })();
  return {
    stop: async () => {
      stopped = true;
      await loop;
    },
  };
}

/** Publishes numbered QoS 1 messages until stopped; never resends, notes what was acknowledged (PUBACK). */
function mqttSender(client: MqttClient, topic: string, src: string, next: { n: number }, acked: Set<string>, perSecond: number): { stop: () => void } {
  const timer = setInterval(() => {
    for (let k = 0; k < perSecond / 100; k++) {
      if (!client.connected) return;
      const n = next.n++;
      client.publish(topic, JSON.stringify({ src, n }), { qos: 1 }, (error) => {
        if (error === undefined || error === null) acked.add(`${src}${n}`);
      });
    }
  }, 10);
  return { stop: () => clearInterval(timer) };
}

/** The id of the newest complete checkpoint in `ck` (0 if none). */
function newest(ck: string): number {
  if (!existsSync(ck)) return 0;
  return Math.max(0, ...readdirSync(ck).filter((n) => /^chk-\d+$/.test(n) && existsSync(join(ck, n, '_MANIFEST'))).map((n) => Number(n.slice(4))));
}

describe('push ingestion across kill -9 (spate run)', () => {
  it('MQTT (in-process broker): killed between receiving a message and acknowledging it, the message is not acknowledged, and its redelivery to the restarted job is taken once', async () => {
    const out = join(dir, 'hold.jsonl');
    const hold = join(dir, 'hold');
    const port = (await freePorts(1))[0]!;
    // No periodic checkpoints: the only fsyncs are the log's (and the final checkpoint's).
    const args = [holdFixture, '--parallelism', '1', '--checkpoint-dir', join(dir, 'hold-ck'), '--checkpoint-interval', '0', '--', out, String(port), hold];
    const first = run(args);
    const url = await endpoint(first, 'mqtt');
    const client = await mqtt.connectAsync(url, { clientId: 'holder', clean: false, reconnectPeriod: 100 });
    client.on('error', () => undefined);
    await client.publishAsync('numbers', '{"n":1}', { qos: 1 });
    writeFileSync(hold, '');
    let acked = false;
    client.publish('numbers', '{"n":2}', { qos: 1 }, (error) => void (acked = error === undefined || error === null));
    await until(() => first.stderr().includes('SYNC-HELD'), 'the append of n=2 to be under way');
    await new Promise((r) => setTimeout(r, 300));
    expect(acked).toBe(false); // received and written, not durable: no PUBACK
    first.child.kill('SIGKILL');
    await first.exit;
    rmSync(hold);
    // The same port: the publisher reconnects and delivers n=2 again (DUP, same packet id).
    const second = run(args);
    await until(() => acked, 'the redelivered message to be acknowledged');
    await client.publishAsync('numbers', '{"n":3}', { qos: 1 });
    await client.endAsync();
    second.child.kill('SIGTERM');
    expect(await second.exit).toBe(0);
    expect(rows(out).map((r) => r.n)).toEqual([1, 2, 3]);
    // n=2 was in the log already (written before the kill): its redelivery was recognised.
    expect(second.stderr()).toMatch(/duplicates=1/);
  });

  it('HTTP (retrying under Idempotency-Keys) and MQTT (in-process broker) at parallelism 2: every acknowledged record is in the output exactly once', async () => {
    const out = join(dir, 'aedes.jsonl');
    const ck = join(dir, 'aedes-ck');
    const args = [fixture, '--parallelism', '2', '--checkpoint-dir', ck, '--checkpoint-interval', '100', '--', out, 'aedes'];
    const acked = new Set<string>();
    const nextHttp = { n: 0 };
    const nextMqtt = { n: 0 };
    const unsure: Batch[] = [];
    let resent = 0;
    for (let round = 0; round < 3; round++) {
      const r = run(args);
      const httpUrl = await endpoint(r, 'http');
      const mqttUrl = await endpoint(r, 'mqtt');
      const client = await mqtt.connectAsync(mqttUrl, { reconnectPeriod: 0, clientId: `pub-${round}` });
      client.on('error', () => undefined);
      resent += unsure.length;
      const h = httpSender(httpUrl, nextHttp, acked, unsure);
      const m = mqttSender(client, 'numbers', 'm', nextMqtt, acked, 3000);
      const before = acked.size;
      const seen = newest(ck);
      // Kill once a checkpoint of this run is complete, so that the next run restores from one.
      await until(() => acked.size > before + 3000 && newest(ck) > seen, 'acknowledgements and a checkpoint');
      if (round < 2) {
        await new Promise((resolve) => setTimeout(resolve, 50 + round * 80));
        r.child.kill('SIGKILL');
        await r.exit;
        m.stop();
        await h.stop();
        client.end(true);
        // Whatever is committed was acknowledged or not, but never twice.
        for (const [key, c] of counts(out)) expect(c, key).toBe(1);
      } else {
        m.stop();
        await h.stop();
        await client.endAsync();
        // What was acknowledged but not yet read when a job stops stays in its log for the next
        // run: let this run read (and commit) everything first.
        await until(
          () => {
            const got = counts(out);
            for (const k of acked) if (!got.has(k)) return false;
            return true;
          },
          'every acknowledged record in the output',
          30_000,
        );
        r.child.kill('SIGTERM');
        expect(await r.exit).toBe(0);
        expect(r.stderr(), r.stderr()).toMatch(/resuming from checkpoint/);
      }
    }
    const got = counts(out);
    const missing = [...acked].filter((k) => !got.has(k));
    expect(missing).toEqual([]);
    for (const [key, c] of got) expect(c, key).toBe(1);
    expect(acked.size).toBeGreaterThan(9000);
    // Every HTTP batch was acknowledged in the end (those whose answer a kill lost, sent again
    // under their key): all of them are in the output, once.
    expect(unsure).toEqual([]);
    expect(resent).toBeGreaterThan(0);
    for (let n = 0; n < nextHttp.n; n++) expect(got.get(`h${n}`), `h${n}`).toBe(1);
  });

  it('MQTT from Mosquitto: everything the broker took is in the output exactly once, redeliveries after a kill included', async () => {
    const out = join(dir, 'mosquitto.jsonl');
    const ck = join(dir, 'mosquitto-ck');
    const clientId = `spate-crash-${randomUUID().slice(0, 8)}`;
    const topic = `spate-test/${clientId}`;
    const args = [fixture, '--parallelism', '1', '--checkpoint-dir', ck, '--checkpoint-interval', '100', '--', out, 'mosquitto', MOSQUITTO, clientId, topic];
    const acked = new Set<string>();
    const next = { n: 0 };
    const publisher = await mqtt.connectAsync(MOSQUITTO, { reconnectPeriod: 0 });
    let sender: { stop: () => void } | null = null;
    try {
      for (let round = 0; round < 3; round++) {
        const r = run(args);
        await endpoint(r, 'mqtt');
        // Published from when the session subscribed on: the broker keeps them for it across kills.
        sender ??= mqttSender(publisher, topic, 'q', next, acked, 2000);
        const before = rows(out).length;
        await until(() => rows(out).length > before + 1000, 'output to grow');
        if (round < 2) {
          r.child.kill('SIGKILL');
          await r.exit;
          continue;
        }
        sender.stop();
        await until(
          () => {
            const got = counts(out);
            for (const k of acked) if (!got.has(k)) return false;
            return true;
          },
          'every acknowledged message in the output',
          30_000,
        );
        r.child.kill('SIGTERM');
        expect(await r.exit).toBe(0);
      }
    } finally {
      sender?.stop();
      await publisher.endAsync();
      await (await mqtt.connectAsync(MOSQUITTO, { clientId, clean: true, reconnectPeriod: 0 })).endAsync();
    }
    const got = counts(out);
    expect([...acked].filter((k) => !got.has(k))).toEqual([]);
    // A message appended but not yet acknowledged to the broker when the job was killed comes
    // again (with the DUP flag): the source finds it in its log and does not append it twice.
    const repeated = [...got].filter(([, c]) => c > 1).map(([k]) => k);
    expect(repeated).toEqual([]);
    expect(acked.size).toBeGreaterThan(2000);
  });
});
