/**
 * The JetStream source and sink against the real NATS server (`scripts/services.sh up nats`; URL
 * from SPATE_NATS_URL). Every test works on streams of its own, deleted after the file. The
 * server-restart tests are in nats-restart.disruptive.test.ts.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Batch, CollectSink, GeneratorSource, JsonlSink, Pipeline, type DeadLetter } from '../../index.ts';
import type { Committable } from '../../runtime/sink.ts';
import { JetStreamSink, type JetStreamCommittable } from './sink.ts';
import { ackFields, JetStreamSource } from './source.ts';
import { cleanupStreams, manager, NATS_URL, publish, readAll, testStream } from '../../../test/support/nats.ts';
import { sinkContext } from '../../../test/support/postgres.ts';

const connection = { servers: NATS_URL };
const dirs: string[] = [];
afterAll(async () => {
  await cleanupStreams();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'spate-nats-'));
  dirs.push(d);
  return d;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function until(cond: () => boolean, what: string, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

function batch<T>(values: readonly T[]): Batch<T> {
  const b = new Batch<T>(Math.max(1, values.length));
  for (const v of values) b.push(v, 0);
  return b;
}

const range = (from: number, to: number): number[] => Array.from({ length: to - from }, (_, k) => from + k);

interface Rec {
  readonly i: number;
}

describe('JetStreamSource', () => {
  it('runs the example of its TSDoc (and of JetStreamSink’s)', async () => {
    const readingsStream = await testStream('readings');
    const alertsStream = await testStream('alerts');
    const temps = [25, 31, 29, 35, 40, 12];
    await publish(temps.map((temp, i) => ({ subject: readingsStream.subject('d'), data: JSON.stringify({ device: `d${i % 2}`, temp }) })));
    // As in the @example, with the test's streams and checkpoint directory.
    const connection = { servers: process.env['SPATE_NATS_URL'] ?? 'nats://127.0.0.1:4222' };
    const p = new Pipeline();
    p.source(new JetStreamSource<{ device: string; temp: number }>({ connection, stream: readingsStream.name, bounded: true }), { id: 'readings' })
      .filter((r) => r.temp > 30)
      .sink(new JetStreamSink<{ device: string; temp: number }>({ connection, subject: alertsStream.subject('hot') }), { id: 'alerts' });
    await p.run({ checkpointDir: tempDir() });
    expect(await records(alertsStream.name)).toEqual([
      { device: 'd1', temp: 31 },
      { device: 'd1', temp: 35 },
      { device: 'd0', temp: 40 },
    ]);
  });

  it('parses the acknowledgement subject of both forms', () => {
    const f = new Float64Array(4);
    expect(ackFields('$JS.ACK.S.C.1.42.7.1796039421584437426.3', f)).toBe(true);
    expect([...f]).toEqual([42, 7, 1796039421584, 3]);
    expect(ackFields('$JS.ACK.dom.acchash.S.C.2.43.8.1796039421585000000.0.rnd', f)).toBe(true);
    expect([...f]).toEqual([43, 8, 1796039421585, 0]);
    expect(ackFields('_INBOX.abc', f)).toBe(false);
  });

  it('reads a stream to its end in sequence order, with the messages’ times', async () => {
    const s = await testStream('read');
    const before = Date.now();
    await publish(range(0, 3_000).map((i) => ({ subject: s.subject(`k${i % 3}`), data: JSON.stringify({ i }) })));
    const out = new CollectSink<Rec>();
    const p = new Pipeline();
    p.source(new JetStreamSource<Rec>({ connection, stream: s.name, bounded: true, batch: 100 }), { id: 'in' }).sink(out);
    const result = await p.run();
    expect(out.values.map((r) => r.i)).toEqual(range(0, 3_000));
    for (const r of out.records) expect(r.time).toBeGreaterThanOrEqual(before - 1_000);
    expect(out.records.at(-1)!.time).toBeLessThanOrEqual(Date.now());
    expect(result.deadLetters).toBe(0);
    // The reader deleted its consumer on close.
    expect((await (await manager()).streams.info(s.name)).state.consumer_count).toBe(0);
  });

  it('starts where a fresh job is told: new messages only, a sequence, a time', async () => {
    const s = await testStream('start');
    await publish(range(0, 100).map((i) => ({ subject: s.subject('x'), data: JSON.stringify({ i }) })));
    await sleep(50);
    const middle = Date.now();
    await sleep(50);
    await publish(range(100, 200).map((i) => ({ subject: s.subject('x'), data: JSON.stringify({ i }) })));
    const read = async (start: ConstructorParameters<typeof JetStreamSource<Rec>>[0]['start']): Promise<number[]> => {
      const out = new CollectSink<Rec>();
      const p = new Pipeline();
      p.source(new JetStreamSource<Rec>({ connection, stream: s.name, bounded: true, ...(start === undefined ? {} : { start }) })).sink(out);
      await p.run();
      return out.values.map((r) => r.i);
    };
    expect(await read({ sequence: 151 })).toEqual(range(150, 200));
    expect(await read({ time: middle })).toEqual(range(100, 200));
    expect(await read({ time: new Date(Date.now() + 60_000) })).toEqual([]);
    expect(await read('new')).toEqual([]);
    expect(await read(undefined)).toEqual(range(0, 200));
  });

  it('restored from a checkpoint, replays exactly what followed it', async () => {
    const s = await testStream('restore');
    const n = 20_000;
    await publish(range(0, n).map((i) => ({ subject: s.subject('x'), data: JSON.stringify({ i }) })), 1_024);
    const dir = tempDir();
    // Two sinks: one that sees everything read (replays included), one that commits exactly once.
    const committed = join(dir, 'committed.jsonl');
    const job = (bounded: boolean, first: boolean): { p: Pipeline; out: CollectSink<Rec> } => {
      const out = new CollectSink<Rec>();
      const p = new Pipeline();
      // Pulls of 500 messages, polls of 10: a checkpoint mostly finds messages received but not yet emitted.
      const read = p
        .source(new JetStreamSource<Rec>({ connection, stream: s.name, bounded, batch: 500 }), { id: 'in' })
        .map((r) => {
          // 20 µs a record: checkpoints come while the stream is read; in the first run 2 ms a
          // record past the first 5 000, so that it cannot reach the end before it is stopped
          // however slowly its checkpoints come on a loaded machine.
          const spin = first && r.i >= 5_000 ? 2 : 0.02;
          const t = performance.now();
          while (performance.now() - t < spin);
          return r;
        }, { id: 'slow' });
      read.sink(out, { id: 'collect' });
      read.sink(new JsonlSink<Rec>(committed), { id: 'committed' });
      return { p, out };
    };
    // Run 1 checkpoints every 5 ms, then stops without a final checkpoint.
    const first = job(false, true);
    const running = first.p.start({ checkpointDir: dir, checkpointInterval: 5, batchSize: 10 });
    const checkpoints = (): number => (running.job as unknown as { checkpoints(): unknown[] }).checkpoints().length;
    await until(() => first.out.records.length >= 2_000, 'the first run to read');
    const before = checkpoints();
    await until(() => checkpoints() >= before + 3, 'checkpoints while reading');
    await running.stop({ checkpoint: false });
    const seen = first.out.values.map((r) => r.i);
    expect(seen).toEqual(range(0, seen.length)); // in order, no gap
    // Run 2 resumes from the newest checkpoint: a contiguous suffix of the input from where it was.
    const second = job(true, false);
    const lines: string[] = [];
    await second.p.run({ checkpointDir: dir, log: (l) => lines.push(l) });
    const resumed = second.out.values.map((r) => r.i);
    const k = resumed[0]!;
    expect(resumed).toEqual(range(k, n));
    expect(k).toBeGreaterThan(0);
    expect(k).toBeLessThanOrEqual(seen.length); // records after the checkpoint are read again, nothing before it
    expect(lines.some((l) => /resuming from checkpoint/.test(l))).toBe(true);
    // Exactly once end to end: what the checkpoints committed, then the rest, nothing twice or missing.
    const got = readFileSync(committed, 'utf8').trimEnd().split('\n');
    expect(got.map((l) => (JSON.parse(l) as Rec).i)).toEqual(range(0, n));
  });

  it('reads subject partitions with two parallel instances, or both with one, each partition in order', async () => {
    const s = await testStream('parallel');
    const n = 4_000;
    await publish(range(0, n).map((i) => ({ subject: s.subject(`p${i % 2}.x`), data: JSON.stringify({ i }) })));
    for (const parallelism of [2, 1]) {
      const out = new CollectSink<Rec>();
      const p = new Pipeline();
      const source = new JetStreamSource<Rec>({ connection, stream: s.name, subjects: [s.subject('p0.>'), s.subject('p1.>')], bounded: true, batch: 128 });
      p.source(source, { id: 'in' }).sink(out);
      if (parallelism === 2) expect(p.explain(2)).toMatch(/task 0 ×2: in \(source\)/);
      const result = await p.run({ parallelism });
      const values = out.values.map((r) => r.i);
      expect([...values].sort((a, b) => a - b), `parallelism ${parallelism}`).toEqual(range(0, n));
      for (const part of [0, 1]) expect(values.filter((i) => i % 2 === part)).toEqual(range(0, n).filter((i) => i % 2 === part)); // in order
      expect(result.metrics.find((m) => m.step === 'in')!.recordsOut).toBe(n);
    }
  });

  it('turns bad messages into dead letters with the stream, subject, sequence, size and payload; the job goes on', async () => {
    const s = await testStream('bad');
    const strict = (v: unknown): Rec => {
      const o = v as Record<string, unknown>;
      if (typeof o !== 'object' || o === null || typeof o['i'] !== 'number') throw new Error('i must be a number');
      const unknown = Object.keys(o).filter((k) => k !== 'i');
      if (unknown.length > 0) throw new Error(`unknown field(s): ${unknown.join(', ')}`);
      return { i: o['i'] };
    };
    const big = JSON.stringify({ i: 99, pad: 'x'.repeat(5_000) });
    await publish([
      { subject: s.subject('a'), data: JSON.stringify({ i: 1 }) },
      { subject: s.subject('a'), data: '{"i": 2,' }, // malformed
      { subject: s.subject('b'), data: new Uint8Array([0x7b, 0xff, 0xfe, 0x7d]) }, // invalid UTF-8
      { subject: s.subject('a'), data: big }, // oversized
      { subject: s.subject('a'), data: JSON.stringify({ i: 'five' }) }, // schema
      { subject: s.subject('a'), data: JSON.stringify({ i: 6, extra: true }) }, // unknown field
      { subject: s.subject('a'), data: JSON.stringify({ i: 7 }) },
    ]);
    const out = new CollectSink<Rec>();
    const dead = new CollectSink<DeadLetter>();
    const p = new Pipeline();
    p.source(new JetStreamSource<Rec>({ connection, stream: s.name, bounded: true, schema: strict, maxBytes: 1_000 }), { id: 'orders' }).sink(out);
    p.deadLetters().sink(dead);
    const result = await p.run();
    expect(out.values).toEqual([{ i: 1 }, { i: 7 }]);
    expect(result.deadLetters).toBe(5);
    const letters = dead.values;
    expect(letters.map((d) => d.step)).toEqual(['orders', 'orders', 'orders', 'orders', 'orders']);
    expect(letters.map((d) => (d.record as { sequence: number }).sequence)).toEqual([2, 3, 4, 5, 6]);
    for (const d of letters) expect(d.record).toMatchObject({ stream: s.name });
    expect(letters[0]!.record).toMatchObject({ subject: s.subject('a'), size: 8, payload: '{"i": 2,' });
    expect(letters[0]!.error).toMatch(/malformed JSON/);
    expect(letters[1]!.record).toMatchObject({ subject: s.subject('b'), size: 4 });
    expect(letters[1]!.error).toMatch(/invalid UTF-8/);
    expect(letters[2]!.record).toMatchObject({ size: big.length });
    expect((letters[2]!.record as { payload: string }).payload).toHaveLength(1_001); // truncated, with an ellipsis
    expect(letters[2]!.error).toMatch(/larger than maxBytes/);
    expect(letters[3]!.error).toMatch(/i must be a number/);
    expect(letters[4]!.error).toMatch(/unknown field\(s\): extra/);
  });

  it('is idle once it has read everything, so an event-time window still fires on a live stream', async () => {
    const s = await testStream('idle');
    await publish(range(0, 10).map((i) => ({ subject: s.subject('x'), data: JSON.stringify({ i }) })));
    const p = new Pipeline();
    const source = new JetStreamSource<Rec>({ connection, stream: s.name, time: 'ingestion' });
    p.source(source, { id: 'in', idleTimeout: 0 }).sink(new CollectSink<Rec>(), { id: 'out' });
    const running = p.start();
    const idle = (): boolean => running.job.metrics().find((m) => m.step === 'in')?.idle === true;
    await until(() => running.job.metrics().find((m) => m.step === 'in')?.recordsOut === 10 && idle(), 'the source to read all and turn idle');
    await publish([{ subject: s.subject('x'), data: JSON.stringify({ i: 10 }) }]);
    await until(() => running.job.metrics().find((m) => m.step === 'in')?.recordsOut === 11, 'the new message');
    await until(idle, 'idle again');
    await running.stop();
  });

  it('refuses a work-queue stream, whose acknowledged messages are deleted', async () => {
    const s = await testStream('wq', { retention: 'workqueue' as never });
    const p = new Pipeline();
    p.source(new JetStreamSource<Rec>({ connection, stream: s.name })).sink(new CollectSink());
    await expect(p.run()).rejects.toThrow(/retention 'workqueue'.*needs a stream with retention 'limits'/);
  });
});

/** The messages of a stream as records, in stream order. */
async function records<R>(stream: string): Promise<R[]> {
  return (await readAll(stream)).map((m) => JSON.parse(m.data) as R);
}

describe('JetStreamSink', () => {
  it('publishes nothing before the commit, everything at the commit, and a re-commit stores nothing twice', async () => {
    const s = await testStream('commit');
    const subject = s.subject('out');
    const sink = new JetStreamSink<Rec>({ connection, subject });
    const ctx = sinkContext({ stepId: 'out' });
    await sink.open(ctx);
    await sink.abort();
    sink.write(batch(range(0, 500).map((i) => ({ i }))));
    const c1 = sink.preCommit() as JetStreamCommittable;
    sink.write(batch(range(500, 800).map((i) => ({ i }))));
    const c2 = sink.preCommit() as JetStreamCommittable;
    expect(c1.count).toBe(500);
    expect(await readAll(s.name)).toEqual([]); // pre-committed: invisible
    const committables: Array<Committable<JetStreamCommittable>> = [
      { checkpointId: 1, instance: 0, data: c1 },
      { checkpointId: 2, instance: 0, data: c2 },
    ];
    await sink.commit(committables.slice(0, 1));
    expect((await records<Rec>(s.name)).map((r) => r.i)).toEqual(range(0, 500));
    await sink.commit(committables.slice(1));
    await sink.commit(committables); // again: recorded as done, nothing published
    expect(sink.stats!.acked).toBe(800);
    await sink.close();
    // A job restarted from a checkpoint listing both commits them again, in a new process; its
    // commit records say they are done. Without the records, the message ids deduplicate them.
    const again = new JetStreamSink<Rec>({ connection, subject, commitBucket: `spate_test_${process.pid}` });
    await again.open(sinkContext({ stepId: 'out', restoredCheckpoint: 2 }));
    await again.commit(committables);
    expect(again.stats!.acked).toBe(800);
    expect(again.stats!.duplicates).toBe(800);
    await again.close();
    const msgs = await readAll(s.name);
    expect(msgs.map((m) => (JSON.parse(m.data) as Rec).i)).toEqual(range(0, 800));
    expect(msgs[0]!.id).toBe(`${c1.nonce}:1:0:0`);
    await (await manager()).streams.delete(`KV_spate_test_${process.pid}`);
  });

  it('sends records to the subject of each, and dead-letters records it cannot encode', async () => {
    const s = await testStream('subjects');
    const sink = new JetStreamSink<{ i: number; big?: string }>({
      connection,
      subject: (r) => s.subject(r.i % 2 === 0 ? 'even' : 'odd'),
      encode: (r) => {
        if (r.i === 3) throw new Error('three cannot be encoded');
        return JSON.stringify(r);
      },
    });
    const ctx = sinkContext({ stepId: 'out' });
    await sink.open(ctx);
    await sink.abort();
    const big = 'x'.repeat(2 * 1024 * 1024); // beyond the server's max_payload (1 MiB)
    sink.write(batch([{ i: 0 }, { i: 1 }, { i: 2 }, { i: 3 }, { i: 4, big }, { i: 5 }]));
    await sink.commit([{ checkpointId: 1, instance: 0, data: sink.preCommit() as JetStreamCommittable }]);
    await sink.close();
    const msgs = await readAll(s.name);
    expect(msgs.map((m) => [m.subject, (JSON.parse(m.data) as Rec).i])).toEqual([
      [s.subject('even'), 0],
      [s.subject('odd'), 1],
      [s.subject('even'), 2],
      [s.subject('odd'), 5],
    ]);
    expect(ctx.dead.map((d) => d.error)).toEqual(['three cannot be encoded', expect.stringMatching(/larger than the server's max_payload/)]);
  });

  it('warns when the stream’s duplicate window is short', async () => {
    const s = await testStream('window', { duplicate_window: 5e9 });
    const sink = new JetStreamSink<Rec>({ connection, subject: s.subject('x') });
    const ctx = sinkContext({ stepId: 'out' });
    await sink.open(ctx);
    await sink.close();
    expect(ctx.lines.some((l) => /duplicate window of 5 s, less than 120 s/.test(l))).toBe(true);
  });

  it('in a pipeline: exactly once across a stop without a final checkpoint and a restart', async () => {
    const s = await testStream('pipeline');
    const n = 20_000;
    const dir = tempDir();
    const job = (): Pipeline => {
      const p = new Pipeline();
      p.source(new GeneratorSource<Rec>({ count: n, make: (i) => ({ i }), ratePerSecond: 40_000 }), { id: 'numbers' }).sink(
        new JetStreamSink<Rec>({ connection, subject: s.subject('out') }),
        { id: 'out' },
      );
      return p;
    };
    const running = job().start({ checkpointDir: dir, checkpointInterval: 30 });
    await until(() => (running.job.metrics().find((m) => m.step === 'out')?.recordsIn ?? 0) > n / 3, 'a third of the input');
    await running.stop({ checkpoint: false }); // what followed the last checkpoint is lost with the process
    const partial = (await records<Rec>(s.name)).map((r) => r.i);
    expect(partial).toEqual(range(0, partial.length)); // only whole checkpoints, in order
    expect(partial.length).toBeLessThan(n);
    await job().run({ checkpointDir: dir, checkpointInterval: 30 });
    expect((await records<Rec>(s.name)).map((r) => r.i)).toEqual(range(0, n));
  });

  it('two sink instances, stopped without a final checkpoint, restarted as one: exactly once', async () => {
    const s = await testStream('rescale');
    const n = 20_000;
    const dir = tempDir();
    const job = (): Pipeline => {
      const p = new Pipeline();
      p.source(new GeneratorSource<Rec>({ count: n, make: (i) => ({ i }), ratePerSecond: 40_000 }), { id: 'numbers' }).sink(
        new JetStreamSink<Rec>({ connection, subject: s.subject('out') }),
        { id: 'out' },
      );
      return p;
    };
    const running = job().start({ checkpointDir: dir, checkpointInterval: 30, parallelism: 2 });
    expect(job().explain(2)).toMatch(/task 0 ×2: numbers \(source\) → out \(sink\)/);
    await until(() => (running.job.metrics().find((m) => m.step === 'out')?.recordsIn ?? 0) > n / 3, 'a third of the input');
    await running.stop({ checkpoint: false });
    const partial = (await records<Rec>(s.name)).map((r) => r.i);
    expect(new Set(partial).size).toBe(partial.length);
    // The restored checkpoint lists both old instances' messages; the one new instance commits them (again).
    await job().run({ checkpointDir: dir, checkpointInterval: 30, parallelism: 1 });
    expect((await records<Rec>(s.name)).map((r) => r.i).sort((a, b) => a - b)).toEqual(range(0, n));
  });

  it('at least once: publishes as records come and acknowledges them at each checkpoint', async () => {
    const s = await testStream('alo');
    const n = 10_000;
    const p = new Pipeline();
    const sink = new JetStreamSink<Rec>({ connection, subject: s.subject('out'), delivery: 'at-least-once', maxInFlight: 256 });
    p.source(new GeneratorSource<Rec>({ count: n, make: (i) => ({ i }) }), { id: 'numbers' }).sink(sink, { id: 'out' });
    await p.run({ checkpointInterval: 50 });
    expect((await records<Rec>(s.name)).map((r) => r.i)).toEqual(range(0, n));
  });
});

describe('JetStream exactly once across SIGKILL', () => {
  it('`spate run` killed twice, then run to the end: every input message in the output once', async () => {
    const input = await testStream('crash_in');
    const output = await testStream('crash_out');
    const n = 20_000;
    await publish(range(0, n).map((i) => ({ subject: input.subject('x'), data: JSON.stringify({ i }) })), 1_024);
    const dir = tempDir();
    const bin = join(import.meta.dirname, '..', '..', '..', 'bin', 'spate.js');
    const fixture = join(import.meta.dirname, '..', '..', '..', 'test', 'fixtures', 'nats-pipeline.ts');
    const args = ['run', fixture, '--parallelism', '1', '--checkpoint-dir', join(dir, 'ck'), '--checkpoint-interval', '50', '--', NATS_URL, input.name, output.subject('out')];
    const run = (killAfter: number | undefined): Promise<{ code: number | null; signal: string | null; stderr: string }> =>
      new Promise((resolve) => {
        const child = spawn(process.execPath, [bin, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
        let stderr = '';
        let timer: ReturnType<typeof setTimeout> | undefined;
        child.stderr!.on('data', (d: Buffer) => {
          stderr += d.toString();
          // Time the kill from the pipeline's start, not from a start-up that a busy machine slows.
          if (killAfter !== undefined && timer === undefined && /running|resuming|checkpoint/.test(stderr)) timer = setTimeout(() => child.kill('SIGKILL'), killAfter);
        });
        child.stdout!.resume();
        child.on('exit', (code, signal) => {
          clearTimeout(timer);
          resolve({ code, signal, stderr });
        });
      });
    let kills = 0;
    for (const after of [300, 600]) {
      const r = await run(after);
      if (r.signal === 'SIGKILL') kills++;
      else expect(r.code, r.stderr).toBe(0);
      const partial = (await records<{ i: number; square: number }>(output.name)).map((x) => x.i);
      expect(new Set(partial).size).toBe(partial.length); // never a duplicate, even mid-way
    }
    const last = await run(undefined);
    expect(last.code, last.stderr).toBe(0);
    const got = await records<{ i: number; square: number }>(output.name);
    expect(got.map((x) => x.i).sort((a, b) => a - b)).toEqual(range(0, n));
    for (const x of got) expect(x.square).toBe(x.i * x.i);
    expect(kills).toBeGreaterThanOrEqual(1);
  }, 90_000);
});
