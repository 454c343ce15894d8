import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { Pipeline } from '../../api/pipeline.ts';
import type { DeadLetter } from '../../runtime/operator.ts';
import { type WebSocketAck, WebSocketSource, type WebSocketSourceOptions } from './websocket-source.ts';

const root = mkdtempSync(join(tmpdir(), 'spate-ws-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const fresh = (): string => join(root, `d${n++}`);

async function start<T>(options: Partial<WebSocketSourceOptions<T>>, gate?: () => Promise<void> | undefined) {
  const source = new WebSocketSource<T>({ port: 0, dir: fresh(), ...options });
  const seen: T[] = [];
  const dead: DeadLetter[] = [];
  const p = new Pipeline();
  p.source(source, { id: 'ws' }).sink({ write: (b) => void seen.push(...(b.values.slice(0, b.length) as T[])), ...(gate === undefined ? {} : { backpressure: gate }) });
  p.deadLetters().sink({ write: (b) => void dead.push(...(b.values.slice(0, b.length) as DeadLetter[])) });
  const job = p.start();
  const address = await source.listening();
  return { source, url: address.url, seen, dead, stop: () => job.stop() };
}

/** A client that collects the server's answers. */
async function connect(url: string, headers: Record<string, string> = {}): Promise<{ ws: WebSocket; acks: WebSocketAck[] }> {
  const ws = new WebSocket(url, { headers });
  const acks: WebSocketAck[] = [];
  ws.on('message', (d) => acks.push(JSON.parse(d.toString()) as WebSocketAck));
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  return { ws, acks };
}

async function until(cond: () => boolean, what: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('WebSocketSource', () => {
  it('acknowledges every message in order once durable, with the client id of a batch envelope, and reports bad parts per message', async () => {
    const s = await start<{ i: number }>({ maxMessageBytes: 10_000, schema: (v) => { if (typeof (v as { i?: unknown }).i !== 'number') throw new Error('i must be a number'); return v as { i: number }; } });
    const { ws, acks } = await connect(s.url);
    ws.send(JSON.stringify({ i: 0 }));
    ws.send(JSON.stringify({ id: 'batch-1', records: [{ i: 1 }, { i: 2 }] }));
    ws.send('{"i":3}\n{"i":4}\n{broken\n{"i":"five"}');
    ws.send(Buffer.from(JSON.stringify([{ i: 5 }]))); // binary frames too
    ws.send('x'.repeat(20_000)); // too large: refused, the connection stays
    ws.send(JSON.stringify({ id: 7, records: [{ i: 6 }] }));
    await until(() => acks.length === 6, 'six answers');
    expect(acks).toEqual([
      { ack: 1, accepted: 1, rejected: 0 },
      { ack: 2, id: 'batch-1', accepted: 2, rejected: 0 },
      {
        ack: 3,
        accepted: 2,
        rejected: 2,
        errors: [
          { line: 3, reason: 'malformed', error: expect.stringMatching(/malformed JSON on line 3/) },
          { line: 4, reason: 'invalid', error: 'i must be a number' },
        ],
      },
      { ack: 4, accepted: 1, rejected: 0 },
      { ack: 5, accepted: 0, rejected: 1, errors: [{ reason: 'too-large', error: expect.stringMatching(/larger than the limit/) }] },
      { ack: 6, id: 7, accepted: 1, rejected: 0 },
    ]);
    await until(() => s.seen.length === 7 && s.dead.length === 3, 'records and dead letters');
    expect(s.seen.map((r) => r.i)).toEqual([0, 1, 2, 3, 4, 5, 6]);
    expect(s.dead.map((d) => (d.record as { reason: string }).reason)).toEqual(['malformed', 'invalid', 'too-large']);
    expect(s.dead[2]!.record).toMatchObject({ endpoint: 'websocket', message: 5, size: 20_000 });
    expect(s.source.metrics).toMatchObject({ requests: 6, accepted: 7, rejected: 3, connections: 1 });
    ws.close();
    await s.stop();
  });

  it('refuses an upgrade without the token (401); takes it as a header or a query parameter', async () => {
    const s = await start<unknown>({ token: 'tok' });
    const refused = await new Promise<number>((resolve) => {
      const ws = new WebSocket(s.url);
      ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
      ws.on('error', () => undefined);
    });
    expect(refused).toBe(401);
    const a = await connect(s.url, { Authorization: 'Bearer tok' });
    const b = await connect(`${s.url}?token=tok`);
    a.ws.send('{"from":"header"}');
    b.ws.send('{"from":"query"}');
    await until(() => s.seen.length === 2, 'two records');
    expect(s.source.metrics.rejectedBy.unauthorized).toBe(1);
    a.ws.close();
    b.ws.close();
    await s.stop();
  });

  it('answers retry-later and stops reading under backpressure, then resumes', async () => {
    let release: () => void = () => undefined;
    let blocked: Promise<void> | undefined = new Promise((r) => (release = r));
    const s = await start<{ i: number }>({ maxBacklog: 200, retryAfter: 3 }, () => blocked);
    const { ws, acks } = await connect(s.url);
    const batch = (from: number): string => Array.from({ length: 50 }, (_, i) => JSON.stringify({ i: from + i })).join('\n');
    for (let k = 0; k < 20; k++) ws.send(batch(k * 50));
    await until(() => acks.some((a) => a.retry === true), 'a retry-later answer');
    const retry = acks.find((a) => a.retry === true)!;
    expect(retry).toMatchObject({ retry: true, retryAfter: 3, error: expect.stringMatching(/backpressure/) });
    blocked = undefined;
    release();
    await until(() => acks.length === 20, 'every answer');
    // Resend what was refused, each until it is accepted; everything acknowledged arrives once.
    const refused = acks.filter((a) => a.retry === true).map((a) => a.ack);
    const accepted = acks.filter((a) => a.retry !== true).map((a) => a.ack);
    expect(refused.length).toBeGreaterThan(0);
    for (const k of refused) {
      for (;;) {
        const before = acks.length;
        ws.send(batch((k - 1) * 50));
        await until(() => acks.length > before, 'an answer');
        if (acks.at(-1)!.retry !== true) break;
        await new Promise((r) => setTimeout(r, 20));
      }
    }
    await until(() => s.seen.length === 1000, 'every record');
    const expected = [...accepted, ...refused].flatMap((k) => Array.from({ length: 50 }, (_, i) => (k - 1) * 50 + i));
    expect(s.seen.map((r) => r.i)).toEqual(expected);
    expect(s.source.metrics.backpressured).toBeGreaterThanOrEqual(refused.length);
    ws.close();
    await s.stop();
  });
});
