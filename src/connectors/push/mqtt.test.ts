import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, describe, expect, it } from 'vitest';
import { holdSyncs } from '../../../test/support/hold-syncs.ts';
import { Pipeline } from '../../api/pipeline.ts';
import type { DeadLetter } from '../../runtime/operator.ts';
import { matches, MqttSource, type MqttSourceOptions } from './mqtt-source.ts';

const root = mkdtempSync(join(tmpdir(), 'spate-mqtt-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const fresh = (): string => join(root, `d${n++}`);
const MOSQUITTO = process.env.SPATE_MQTT_URL ?? 'mqtt://127.0.0.1:1883';

async function start<T, R>(options: MqttSourceOptions<T, R>, gate?: () => Promise<void> | undefined) {
  const source = new MqttSource<T, R>(options);
  const seen: Array<{ value: R; time: number }> = [];
  const dead: DeadLetter[] = [];
  const p = new Pipeline();
  p.source(source, { id: 'mqtt' }).sink({
    write: (b) => {
      for (let i = 0; i < b.length; i++) seen.push({ value: b.values[i] as R, time: b.times[i]! });
    },
    ...(gate === undefined ? {} : { backpressure: gate }),
  });
  p.deadLetters().sink({ write: (b) => void dead.push(...(b.values.slice(0, b.length) as DeadLetter[])) });
  const job = p.start();
  const address = await source.listening();
  return { source, url: address.url, seen, dead, stop: () => job.stop() };
}

async function client(url: string, options: mqtt.IClientOptions = {}): Promise<MqttClient> {
  return mqtt.connectAsync(url, { reconnectPeriod: 0, ...options });
}

async function until(cond: () => boolean, what: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('topic filters', () => {
  it('match as MQTT says', () => {
    expect(matches('sensors/#', 'sensors')).toBe(true);
    expect(matches('sensors/#', 'sensors/a/b')).toBe(true);
    expect(matches('sensors/+/reading', 'sensors/a/reading')).toBe(true);
    expect(matches('sensors/+/reading', 'sensors/a/b/reading')).toBe(false);
    expect(matches('#', '$SYS/broker')).toBe(false);
    expect(matches('+/x', 'a/x/y')).toBe(false);
    expect(() => new MqttSource({ port: 0, topics: ['a/#/b'] })).toThrow(/last level/);
    expect(() => new MqttSource({ topics: ['a'] })).toThrow(/either port .* or url/);
  });
});

describe('MqttSource with the in-process broker (aedes)', () => {
  it('takes QoS 1 messages on matching topics, with the topic, and dead-letters payloads that do not decode (acknowledged all the same)', async () => {
    const s = await start<{ temp: number }, { device: string; temp: number }>({
      port: 0,
      dir: fresh(),
      topics: ['sensors/+/reading'],
      maxMessageBytes: 1000,
      schema: (v) => {
        if (typeof (v as { temp?: unknown }).temp !== 'number') throw new Error('temp must be a number');
        return v as { temp: number };
      },
      message: (r, topic) => ({ device: topic.split('/')[1]!, temp: r.temp }),
    });
    const c = await client(s.url);
    await c.publishAsync('sensors/d1/reading', '{"temp": 20.5}', { qos: 1 });
    await c.publishAsync('sensors/d2/reading', '[{"temp": 1}, {"temp": 2}]', { qos: 1 });
    await c.publishAsync('other/topic', '{"temp": 99}', { qos: 1 }); // passes through the broker, not ingested
    await c.publishAsync('sensors/d3/reading', '{"temp": ', { qos: 1 });
    await c.publishAsync('sensors/d4/reading', Buffer.from([0x7b, 0xff, 0x7d]), { qos: 1 });
    await c.publishAsync('sensors/d5/reading', '{"temp": "hot"}', { qos: 1 });
    await c.publishAsync('sensors/d6/reading', '{"temp": 1, "pad": "' + 'x'.repeat(2000) + '"}', { qos: 1 });
    await c.publishAsync('sensors/d7/reading', '{"temp": 7}', { qos: 0 });
    await until(() => s.seen.length === 4 && s.dead.length === 4, 'records and dead letters');
    expect(s.seen.map((r) => r.value)).toEqual([
      { device: 'd1', temp: 20.5 },
      { device: 'd2', temp: 1 },
      { device: 'd2', temp: 2 },
      { device: 'd7', temp: 7 },
    ]);
    expect(s.dead.map((d) => (d.record as { reason: string }).reason)).toEqual(['malformed', 'invalid-utf8', 'invalid', 'too-large']);
    expect(s.dead[0]!.record).toMatchObject({ endpoint: 'mqtt', topic: 'sensors/d3/reading', client: c.options.clientId, size: 9, payload: '{"temp": ' });
    expect(s.dead[2]!.error).toBe('temp must be a number');
    expect(s.source.metrics).toMatchObject({ requests: 7, accepted: 4, rejected: 4 });
    await c.endAsync();
    await s.stop();
  });

  it('sends the PUBACK only once the message is durable in the log', async () => {
    const dir = fresh();
    const s = await start<unknown, unknown>({ port: 0, dir });
    const hold = await holdSyncs(root);
    const c = await client(s.url);
    let acked = false;
    const published = c.publishAsync('t', '{"n": 1}', { qos: 1 }).then(() => (acked = true));
    await until(() => s.source.metrics.requests === 1, 'the message to arrive');
    await new Promise((r) => setTimeout(r, 300));
    expect(acked).toBe(false); // received, written, not yet durable (held): no PUBACK
    expect(s.seen).toEqual([]);
    hold.release();
    await published;
    await until(() => s.seen.length === 1, 'the record');
    await c.endAsync();
    await s.stop();
  });

  it('requires the token as the password when one is set', async () => {
    const s = await start<unknown, unknown>({ port: 0, dir: fresh(), token: 'pw' });
    await expect(client(s.url, { username: 'device', password: 'wrong' })).rejects.toThrow(/Bad username or password|Not authorized/i);
    await expect(client(s.url)).rejects.toThrow();
    const c = await client(s.url, { username: 'device', password: 'pw' });
    await c.publishAsync('t', '{"ok": true}', { qos: 1 });
    await until(() => s.seen.length === 1, 'the record');
    expect(s.source.metrics.rejectedBy.unauthorized).toBe(2);
    await c.endAsync();
    await s.stop();
  });

  it('holds acknowledgements while the backlog is full, then takes everything', async () => {
    let release: () => void = () => undefined;
    let blocked: Promise<void> | undefined = new Promise((r) => (release = r));
    const s = await start<{ i: number }, { i: number }>({ port: 0, dir: fresh(), maxBacklog: 50 }, () => blocked);
    const c = await client(s.url);
    let acked = 0;
    const all = Array.from({ length: 300 }, (_, i) => c.publishAsync('t', JSON.stringify({ i }), { qos: 1 }).then(() => acked++));
    await until(() => s.source.metrics.backpressured > 0, 'backpressure');
    await new Promise((r) => setTimeout(r, 200));
    expect(acked).toBeLessThan(300);
    expect(s.source.metrics.backlog).toBeLessThan(50 + 300);
    blocked = undefined;
    release();
    await Promise.all(all);
    await until(() => s.seen.length === 300, 'every record');
    expect(s.seen.map((r) => r.value.i)).toEqual(Array.from({ length: 300 }, (_, i) => i));
    await c.endAsync();
    await s.stop();
  });
});

describe('MqttSource with an external broker (Mosquitto)', () => {
  it('subscribes with a persistent session: what is published while the job is down arrives when it is back, once', async () => {
    const dir = fresh();
    const clientId = `spate-test-${randomUUID().slice(0, 8)}`;
    const topic = `spate-test/${clientId}`;
    const options = { url: MOSQUITTO, dir, clientId, topics: [`${topic}/#`] };
    const publisher = await client(MOSQUITTO);
    const first = await start<{ i: number }, { i: number }>(options);
    for (let i = 0; i < 200; i++) await publisher.publishAsync(`${topic}/a`, JSON.stringify({ i }), { qos: 1 });
    await until(() => first.seen.length === 200, 'the first 200');
    await first.stop();
    // The job is down: the broker queues for its session.
    for (let i = 200; i < 500; i++) await publisher.publishAsync(`${topic}/a`, JSON.stringify({ i }), { qos: 1 });
    await publisher.publishAsync(`${topic}/b`, 'not json', { qos: 1 });
    const second = await start<{ i: number }, { i: number }>(options);
    await until(() => second.seen.length === 300 && second.dead.length === 1, 'the queued 300 and a dead letter');
    expect(second.seen.map((r) => r.value.i)).toEqual(Array.from({ length: 300 }, (_, i) => 200 + i));
    expect(second.dead[0]!.record).toMatchObject({ topic: `${topic}/b`, broker: MOSQUITTO, payload: 'not json' });
    await second.stop();
    await publisher.endAsync();
    // Drop the session at the broker.
    await (await client(MOSQUITTO, { clientId, clean: true })).endAsync();
  });

  it('acknowledges to the broker only once durable: a message whose append never completed is delivered again', async () => {
    const dir = fresh();
    const clientId = `spate-test-${randomUUID().slice(0, 8)}`;
    const topic = `spate-test/${clientId}`;
    const options = { url: MOSQUITTO, dir, clientId, topics: [topic] };
    const first = await start<{ i: number }, { i: number }>(options);
    const hold = await holdSyncs(root);
    const publisher = await client(MOSQUITTO);
    await publisher.publishAsync(topic, '{"i": 1}', { qos: 1 });
    await until(() => first.source.metrics.requests === 1, 'the message to arrive');
    // The session ends while the append is held: no PUBACK went to the broker.
    const stopped = first.stop();
    await new Promise((r) => setTimeout(r, 100));
    hold.release();
    await stopped;
    const second = await start<{ i: number }, { i: number }>(options);
    await until(() => second.seen.length >= 1, 'the redelivery');
    expect(second.seen[0]!.value).toEqual({ i: 1 });
    await second.stop();
    await publisher.endAsync();
    await (await client(MOSQUITTO, { clientId, clean: true })).endAsync();
  });
});
