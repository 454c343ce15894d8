import { mkdtempSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { holdSyncs } from '../../../test/support/hold-syncs.ts';
import { Pipeline } from '../../api/pipeline.ts';
import type { StepMetrics } from '../../runtime/job.ts';
import type { DeadLetter } from '../../runtime/operator.ts';
import { WriteAheadLog } from '../wal/write-ahead-log.ts';
import { HttpSource, type HttpSourceOptions } from './http-source.ts';
import { freePorts } from '../../../test/support/net.ts';

const root = mkdtempSync(join(tmpdir(), 'spate-http-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const fresh = (): string => join(root, `d${n++}`);

interface Reading {
  readonly device: string;
  readonly temp: number;
}

/** A schema as a function: the record or a throw. */
const reading = (v: unknown): Reading => {
  const r = v as Partial<Reading>;
  if (typeof r !== 'object' || r === null || typeof r.device !== 'string' || typeof r.temp !== 'number') throw new Error('expected { device: string, temp: number }');
  return { device: r.device, temp: r.temp };
};

interface Started<T> {
  readonly url: string;
  readonly base: string;
  readonly seen: Array<{ value: T; time: number }>;
  readonly dead: DeadLetter[];
  readonly stop: (checkpoint?: boolean) => Promise<void>;
  readonly savepoint: () => Promise<unknown>;
  /** The job's metrics of the source step. */
  readonly stepMetrics: () => StepMetrics;
}

async function start<T>(options: Partial<HttpSourceOptions<T>> & { dir: string }, job: { checkpointDir?: string; gate?: () => Promise<void> | undefined } = {}): Promise<Started<T> & { source: HttpSource<T> }> {
  const source = new HttpSource<T>({ port: 0, ...options });
  const seen: Array<{ value: T; time: number }> = [];
  const dead: DeadLetter[] = [];
  const p = new Pipeline(job.checkpointDir === undefined ? {} : { checkpointDir: job.checkpointDir, checkpointInterval: 0 });
  p.source(source, { id: 'http' }).sink({
    write: (b) => {
      for (let i = 0; i < b.length; i++) seen.push({ value: b.values[i] as T, time: b.times[i]! });
    },
    ...(job.gate === undefined ? {} : { backpressure: job.gate }),
  });
  p.deadLetters().sink({ write: (b) => void dead.push(...(b.values.slice(0, b.length) as DeadLetter[])) });
  const running = p.start();
  const address = await source.listening();
  return {
    source,
    url: address.url,
    base: `http://${address.host}:${address.port}`,
    seen,
    dead,
    stop: async (checkpoint = true) => void (await running.stop({ checkpoint })),
    savepoint: () => running.savepoint(),
    stepMetrics: () => running.job.metrics().find((m) => m.step === 'http')!,
  };
}

async function post(url: string, body: string | Buffer, headers: Record<string, string> = {}): Promise<{ status: number; headers: Headers; body: Record<string, unknown> }> {
  const res = await fetch(url, { method: 'POST', body, headers });
  return { status: res.status, headers: res.headers, body: (await res.json()) as Record<string, unknown> };
}

const ndjson = { 'Content-Type': 'application/x-ndjson' };
const json = { 'Content-Type': 'application/json' };

async function until(cond: () => boolean, what: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('HttpSource', () => {
  it('takes a JSON record, a JSON array and an NDJSON batch; records reach the pipeline in order, stamped with their arrival time', async () => {
    const s = await start<Reading>({ dir: fresh(), schema: reading });
    const before = Date.now();
    expect(await post(s.url, JSON.stringify({ device: 'a', temp: 1 }), json)).toMatchObject({ status: 200, body: { accepted: 1, rejected: 0 } });
    expect((await post(s.url, JSON.stringify([{ device: 'b', temp: 2 }, { device: 'c', temp: 3 }]), json)).body).toEqual({ accepted: 2, rejected: 0 });
    const lines = Array.from({ length: 500 }, (_, i) => JSON.stringify({ device: `d${i}`, temp: i })).join('\n') + '\n';
    expect((await post(s.url, lines, ndjson)).body).toEqual({ accepted: 500, rejected: 0 });
    // No content type (curl -d): one JSON value, or NDJSON when there are several lines.
    expect((await post(s.url, '{"device":"e","temp":5}\r\n{"device":"f","temp":6}\r\n')).body).toEqual({ accepted: 2, rejected: 0 });
    await until(() => s.seen.length === 505, '505 records');
    expect(s.seen.slice(0, 3).map((r) => r.value.device)).toEqual(['a', 'b', 'c']);
    expect(s.seen.slice(3, 503).map((r) => r.value.temp)).toEqual(Array.from({ length: 500 }, (_, i) => i));
    expect(s.seen.slice(503).map((r) => r.value.device)).toEqual(['e', 'f']);
    for (const r of s.seen) expect(r.time).toBeGreaterThanOrEqual(before - 1);
    const health = await fetch(`${s.base}/health`);
    expect(health.status).toBe(200);
    expect(await health.json()).toMatchObject({ status: 'ok', accepted: 505, rejected: 0, backlog: 0 });
    expect(s.source.metrics).toMatchObject({ requests: 4, accepted: 505, rejected: 0 });
    expect((await fetch(`${s.base}/nope`, { method: 'POST', body: '{}' })).status).toBe(404);
    expect((await fetch(s.url)).status).toBe(405);
    await s.stop();
  });

  it('refuses bad payloads with clear 4xx answers, per record for batches, and every refused record is a dead letter', async () => {
    const s = await start<Reading>({ dir: fresh(), schema: reading, maxRequestBytes: 64 * 1024 });
    // Malformed JSON: 400, a dead letter with the payload.
    const malformed = await post(s.url, '{"device": "a", temp: }', json);
    expect(malformed.status).toBe(400);
    expect(malformed.body).toMatchObject({ accepted: 0, rejected: 1, errors: [{ reason: 'malformed', error: expect.stringMatching(/malformed JSON/) }] });
    // Invalid UTF-8 in a JSON body: 400.
    const bad = Buffer.concat([Buffer.from('{"device":"'), Buffer.from([0xc3, 0x28]), Buffer.from('","temp":1}')]);
    expect((await post(s.url, bad, json)).body).toMatchObject({ rejected: 1, errors: [{ reason: 'invalid-utf8' }] });
    // Wrong types: 422 when every record is refused by the schema.
    const wrong = await post(s.url, JSON.stringify([{ device: 1, temp: 'hot' }]), json);
    expect(wrong.status).toBe(422);
    expect(wrong.body).toMatchObject({ errors: [{ index: 0, reason: 'invalid', error: expect.stringMatching(/expected \{ device/) }] });
    // A batch with good and bad lines: the good ones are accepted, the bad ones reported by line.
    const batch = Buffer.concat([
      Buffer.from('{"device":"ok1","temp":1}\n{not json\n'),
      Buffer.from([0x7b, 0xff, 0x7d, 0x0a]), // invalid UTF-8 on line 3
      Buffer.from('{"device":"ok2","temp":2}\n{"device":"x","temp":"warm"}\n\n{"device":"ok3","temp":3}'),
    ]);
    const mixed = await post(s.url, batch, ndjson);
    expect(mixed.status).toBe(207);
    expect(mixed.body).toMatchObject({
      accepted: 3,
      rejected: 3,
      errors: [
        { line: 2, reason: 'malformed' },
        { line: 3, reason: 'invalid-utf8' },
        { line: 5, reason: 'invalid' },
      ],
    });
    // Too large: 413, refused whole, a dead letter with the size and the start of the body.
    const big = '{"device":"big","temp":1,"pad":"' + 'x'.repeat(100_000) + '"}';
    const tooLarge = await post(s.url, big, json);
    expect(tooLarge.status).toBe(413);
    expect(tooLarge.body).toMatchObject({ accepted: 0, rejected: 1, errors: [{ reason: 'too-large' }] });
    // An empty body: 400, nothing to dead-letter.
    expect((await post(s.url, '\n\n', ndjson)).status).toBe(400);

    await until(() => s.seen.length === 3 && s.dead.length === 7, 'records and dead letters');
    expect(s.seen.map((r) => r.value.device)).toEqual(['ok1', 'ok2', 'ok3']);
    for (const d of s.dead) expect(d.step).toBe('http');
    const records = s.dead.map((d) => d.record as Record<string, unknown>);
    expect(records.map((r) => r.reason)).toEqual(['malformed', 'invalid-utf8', 'invalid', 'malformed', 'invalid-utf8', 'invalid', 'too-large']);
    expect(records[0]).toMatchObject({ endpoint: 'http', remote: expect.stringMatching(/127\.0\.0\.1/), size: 23, payload: '{"device": "a", temp: }' });
    expect(records[3]).toMatchObject({ line: 2, size: 9, payload: '{not json' });
    expect(records[6]).toMatchObject({ size: big.length, payload: expect.stringMatching(/^\{"device":"big"/) });
    expect(s.dead[6]!.error).toMatch(/larger than the limit/);
    expect(s.source.metrics.rejectedBy).toMatchObject({ malformed: 2, 'invalid-utf8': 2, invalid: 2, 'too-large': 1, empty: 1 });
    expect(s.source.metrics.accepted).toBe(3);
    // The same counters reach the job's metrics (what a dashboard reads), as the step's `source` metrics.
    expect(s.stepMetrics().source).toMatchObject({ requests: 6, accepted: 3, rejected: 8, 'rejected.malformed': 2, 'rejected.too-large': 1, backlog: 0 });
    await s.stop();
  });

  it('answers only once the records are durable: nothing is acknowledged while the fsync is under way', async () => {
    const s = await start<unknown>({ dir: fresh() });
    const hold = await holdSyncs(root);
    let answered = false;
    const response = post(s.url, '{"a":1}\n{"a":2}', ndjson).then((r) => ((answered = true), r));
    await until(() => s.source.metrics.requests === 1, 'the request');
    await new Promise((r) => setTimeout(r, 300));
    expect(answered).toBe(false);
    expect(s.seen).toEqual([]); // not durable: not readable either
    hold.release();
    expect((await response).status).toBe(200);
    await until(() => s.seen.length === 2, 'the records');
    await s.stop();
  });

  it('answers a request sent again under the same Idempotency-Key as the first time, without storing it twice, across restarts', async () => {
    const dir = fresh();
    const first = await start<{ i: number }>({ dir });
    const body = '{"i":1}\n{"i":2}\n{oops';
    const headers = { ...ndjson, 'Idempotency-Key': 'batch-7' };
    const [a, b] = await Promise.all([post(first.url, body, headers), post(first.url, body, headers)]); // at once: the second waits for the first
    expect([a.status, b.status]).toEqual([207, 207]);
    expect(b.body).toEqual(a.body);
    const c = await post(first.url, body, headers);
    expect(c.headers.get('idempotent-replayed')).toBe('true');
    expect(c.body).toEqual({ accepted: 2, rejected: 1, errors: [{ line: 3, reason: 'malformed', error: expect.stringMatching(/malformed JSON/) }] });
    expect((await post(first.url, '{"i":3}', { ...json, 'Idempotency-Key': 'batch-7' })).status).toBe(422); // another body
    expect((await post(first.url, '{"i":3}', { ...json, 'Idempotency-Key': 'batch-8' })).status).toBe(200);
    await until(() => first.seen.length === 3 && first.dead.length === 1, 'one copy of each');
    expect(first.source.metrics.duplicates).toBe(2);
    await first.stop(false);
    // After a restart the keys are known from the log.
    const second = await start<{ i: number }>({ dir });
    const again = await post(second.url, body, headers);
    expect(again.status).toBe(207);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(again.body).toEqual(c.body);
    expect((await post(second.url, '{"i":3}', { ...json, 'Idempotency-Key': 'batch-8' })).body).toEqual({ accepted: 1, rejected: 0 });
    await second.stop();
  });

  it('requires the bearer token when one is set (401 without it, nothing written), and requires one off loopback', async () => {
    const s = await start<unknown>({ dir: fresh(), token: 's3cret' });
    const none = await post(s.url, '{"a":1}', json);
    expect(none.status).toBe(401);
    expect(none.headers.get('www-authenticate')).toBe('Bearer');
    expect((await post(s.url, '{"a":1}', { ...json, Authorization: 'Bearer wrong' })).status).toBe(401);
    expect((await post(s.url, '{"a":2}', { ...json, Authorization: 'Bearer s3cret' })).status).toBe(200);
    await until(() => s.seen.length === 1, 'the authorized record');
    expect(s.seen[0]!.value).toEqual({ a: 2 });
    expect(s.dead).toEqual([]);
    expect(s.source.metrics.rejectedBy.unauthorized).toBe(2);
    await s.stop();
    expect(() => new HttpSource({ port: 8080, host: '0.0.0.0' })).toThrow(/requires a token/);
    expect(() => new HttpSource({ port: 8080, host: '0.0.0.0', token: 't' })).not.toThrow();
    expect(() => new HttpSource({ port: 8080, host: 'localhost' })).not.toThrow();
  });

  it('binds nothing and opens nothing until the job opens the source', async () => {
    const port = (await freePorts(1))[0]!;
    const dir = fresh();
    const source = new HttpSource({ port, dir });
    // Still free: constructing the source did not listen.
    const probe = createServer();
    await new Promise<void>((resolve, reject) => probe.once('error', reject).listen(port, '127.0.0.1', resolve));
    await new Promise((r) => probe.close(r));
    const { existsSync } = await import('node:fs');
    expect(existsSync(dir)).toBe(false);
    const p = new Pipeline();
    p.source(source, { id: 'http' }).sink({ write: () => undefined });
    const job = p.start();
    expect((await source.listening()).port).toBe(port);
    expect(existsSync(dir)).toBe(true);
    await job.stop();
  });

  it('fails the job naming the step when its port is taken, and leaves the log closed', async () => {
    const first = await start<unknown>({ dir: fresh() });
    const port = Number(new URL(first.url).port);
    const dir = fresh();
    const p = new Pipeline({ log: () => undefined });
    p.source(new HttpSource({ port, dir }), { id: 'second' }).sink({ write: () => undefined });
    await expect(p.run()).rejects.toThrow(/step 'second' failed: .*EADDRINUSE/);
    const wal = await WriteAheadLog.open(dir); // not held by the failed job
    await wal.close();
    await first.stop();
  });

  it('answers 429 with Retry-After when the backlog is full, and takes records again once the job has read them', async () => {
    let release: () => void = () => undefined;
    let blocked: Promise<void> | undefined = new Promise((r) => (release = r));
    const s = await start<{ i: number }>({ dir: fresh(), maxBacklog: 300, retryAfter: 2 }, { gate: () => blocked });
    const batch = (from: number): string => Array.from({ length: 100 }, (_, i) => JSON.stringify({ i: from + i })).join('\n');
    const statuses: number[] = [];
    let sent = 0;
    let refused: Awaited<ReturnType<typeof post>> | null = null;
    for (let k = 0; k < 20 && refused === null; k++) {
      const r = await post(s.url, batch(sent), ndjson);
      statuses.push(r.status);
      if (r.status === 429) refused = r;
      else sent += 100;
    }
    expect(refused).not.toBeNull();
    expect(refused!.headers.get('retry-after')).toBe('2');
    expect(refused!.body.error).toMatch(/backpressure/);
    expect(sent).toBeGreaterThanOrEqual(300);
    expect(sent).toBeLessThan(2000); // bounded: the job read at most one batch of it
    const health = (await (await fetch(`${s.base}/health`)).json()) as { status: string };
    expect(health.status).toBe('backpressure');
    expect(s.source.metrics.backpressured).toBeGreaterThanOrEqual(1);
    // The sink takes input again: the backlog drains, requests are accepted again.
    blocked = undefined;
    release();
    await until(() => s.seen.length === sent, 'the backlog read');
    const again = await post(s.url, batch(sent), ndjson);
    expect(again.status).toBe(200);
    sent += 100;
    await until(() => s.seen.length === sent, 'the last batch');
    expect(s.seen.map((r) => r.value.i)).toEqual(Array.from({ length: sent }, (_, i) => i));
    await s.stop();
  });

  it('bounds the request bodies held in memory: past maxPendingBytes a request is answered 429 before its body is read', async () => {
    const s = await start<{ pad: string }>({ dir: fresh(), maxPendingBytes: 150_000 });
    const body = JSON.stringify({ pad: 'x'.repeat(100_000 - 10) });
    expect(body.length).toBe(100_000);
    // A slow client: its body arrives in two parts.
    let answer: Promise<number> = Promise.resolve(0);
    const slow = request(s.url, { method: 'POST', headers: { ...json, 'Content-Length': String(body.length) } });
    answer = new Promise((resolve) => slow.on('response', (res) => (res.resume(), resolve(res.statusCode!))));
    slow.write(body.slice(0, 10));
    await until(() => s.source.metrics.requests === 1, 'the slow request');
    const refused = await post(s.url, body, json);
    expect(refused.status).toBe(429);
    expect(refused.headers.get('retry-after')).toBe('1');
    slow.end(body.slice(10));
    expect(await answer).toBe(200);
    expect((await post(s.url, body, json)).status).toBe(200); // room again
    await until(() => s.seen.length === 2, 'both records');
    await s.stop();
  });

  it('restores from a checkpoint replaying exactly the records after it, dead letters included, and truncates the log', async () => {
    const dir = fresh();
    const checkpointDir = fresh();
    const batch = (from: number, count: number): string => Array.from({ length: count }, (_, i) => JSON.stringify({ i: from + i })).join('\n');
    const first = await start<{ i: number }>({ dir }, { checkpointDir });
    expect((await post(first.url, batch(0, 100), ndjson)).status).toBe(200);
    await until(() => first.seen.length === 100, 'the first 100');
    await first.savepoint(); // a checkpoint covering 0..99
    expect((await post(first.url, batch(100, 50) + '\n{oops', ndjson)).status).toBe(207);
    await until(() => first.seen.length === 150 && first.dead.length === 1, 'the next 50 and a dead letter');
    await first.stop(false); // a crash: no final checkpoint
    const second = await start<{ i: number }>({ dir }, { checkpointDir });
    await until(() => second.seen.length === 50 && second.dead.length === 1, 'the replay');
    expect(second.seen.map((r) => r.value.i)).toEqual(Array.from({ length: 50 }, (_, i) => 100 + i));
    expect(second.seen.map((r) => r.time)).toEqual(first.seen.slice(100).map((r) => r.time)); // arrival times kept
    expect(second.dead[0]!.record).toMatchObject({ line: 51, payload: '{oops' });
    await second.stop();
    const wal = await WriteAheadLog.open(dir);
    expect(wal.committedSequence).toBe(151); // 150 records and a dead letter, committed
    await wal.close();
    // Stopped with a checkpoint: a restart reads nothing again.
    const third = await start<{ i: number }>({ dir }, { checkpointDir });
    await new Promise((r) => setTimeout(r, 200));
    expect(third.seen).toEqual([]);
    expect(third.dead).toEqual([]);
    await third.stop();
  });

  it('serves many concurrent keep-alive clients, every acknowledged record once', async () => {
    const s = await start<{ c: number; i: number }>({ dir: fresh() });
    const agent = new (await import('node:http')).Agent({ keepAlive: true, maxSockets: 50 });
    const send = (body: string): Promise<number> =>
      new Promise((resolve, reject) => {
        const req = request(s.url, { method: 'POST', agent, headers: ndjson }, (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode!));
        });
        req.on('error', reject);
        req.end(body);
      });
    const clients = 50;
    const perClient = 20;
    await Promise.all(
      Array.from({ length: clients }, async (_, c) => {
        for (let k = 0; k < perClient; k++) {
          const body = Array.from({ length: 10 }, (_, j) => JSON.stringify({ c, i: k * 10 + j })).join('\n');
          expect(await send(body)).toBe(200);
        }
      }),
    );
    await until(() => s.seen.length === clients * perClient * 10, 'every record');
    for (let c = 0; c < clients; c++) {
      // Each client's records in the order it sent them.
      expect(s.seen.filter((r) => r.value.c === c).map((r) => r.value.i)).toEqual(Array.from({ length: perClient * 10 }, (_, i) => i));
    }
    agent.destroy();
    await s.stop();
  });
});
