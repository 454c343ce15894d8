import { spawn } from 'node:child_process';
import { appendFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Pipeline } from '../../api/pipeline.ts';
import { MemoryCheckpointStorage } from '../../checkpoint/storage.ts';
import { WalSource } from './source.ts';
import { WriteAheadLog } from './write-ahead-log.ts';

const dir = mkdtempSync(join(tmpdir(), 'spate-wal-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const fresh = (): string => join(dir, `w${n++}`);
const text = (b: Uint8Array): string => Buffer.from(b).toString('utf8');

async function readAll(wal: WriteAheadLog, from: number, count: number): Promise<string[]> {
  const cursor = wal.cursor(from);
  const out: string[] = [];
  while (out.length < count) {
    const got = cursor.take(count - out.length);
    if (got.length === 0) await cursor.ready();
    out.push(...got.map(text));
  }
  cursor.close();
  return out;
}

describe('WriteAheadLog', () => {
  it('numbers entries, makes them durable, and reads them back from any position across segments', async () => {
    const path = fresh();
    const wal = await WriteAheadLog.open(path, { segmentBytes: 1024 });
    const acks = await Promise.all(Array.from({ length: 200 }, (_, i) => wal.append([Buffer.from(`e${i}`)])));
    expect(acks.map((a) => a.first)).toEqual(Array.from({ length: 200 }, (_, i) => i));
    expect(wal.durableSequence).toBe(200);
    expect(readdirSync(path).length).toBeGreaterThan(1); // rolled over into several segments
    expect(await readAll(wal, 0, 200)).toEqual(Array.from({ length: 200 }, (_, i) => `e${i}`));
    expect(await readAll(wal, 137, 63)).toEqual(Array.from({ length: 63 }, (_, i) => `e${137 + i}`));
    await wal.close();
    const again = await WriteAheadLog.open(path, { segmentBytes: 1024 });
    expect(again.nextSequence).toBe(200);
    const { first } = await again.append([Buffer.from('after')]);
    expect(first).toBe(200);
    expect(await readAll(again, 198, 3)).toEqual(['e198', 'e199', 'after']);
    await again.close();
  });

  it('truncates whole segments before a position, and refuses to read what was truncated', async () => {
    const path = fresh();
    const wal = await WriteAheadLog.open(path, { segmentBytes: 1024 });
    for (let i = 0; i < 300; i++) await wal.append([Buffer.from(`entry-${i}`.padEnd(40, '.'))]);
    const before = readdirSync(path).length;
    await wal.truncate(250);
    expect(readdirSync(path).length).toBeLessThan(before);
    expect(wal.firstSequence).toBeLessThanOrEqual(250);
    expect(() => wal.cursor(0)).toThrow(/was truncated/);
    expect((await readAll(wal, 250, 50))[0]).toMatch(/^entry-250/);
    await wal.close();
  });

  it('cuts off a torn tail on open (an append that a crash interrupted was never acknowledged)', async () => {
    const path = fresh();
    const wal = await WriteAheadLog.open(path);
    await wal.append([Buffer.from('one'), Buffer.from('two')]);
    await wal.close();
    const segment = join(path, readdirSync(path)[0]!);
    const size = statSync(segment).size;
    appendFileSync(segment, Buffer.from([50, 0, 0, 0, 1, 2])); // half a header and nothing after
    const again = await WriteAheadLog.open(path);
    expect(statSync(segment).size).toBe(size);
    expect(again.nextSequence).toBe(2);
    expect(await readAll(again, 0, 2)).toEqual(['one', 'two']);
    await again.close();
  });

  it('is one instance per directory in a process, locked against other live processes, and taken over from a dead one', async () => {
    const path = fresh();
    const a = await WriteAheadLog.open(path);
    const b = await WriteAheadLog.open(join(path, '.'));
    expect(b).toBe(a);
    await a.append([Buffer.from('x')]);
    await b.close(); // one reference left: still open
    await a.append([Buffer.from('y')]);
    // Another live process holds it: refused with its pid.
    const other = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 30000)'], { stdio: 'ignore' });
    await a.close();
    writeFileSync(join(path, 'LOCK'), String(other.pid));
    await expect(WriteAheadLog.open(path)).rejects.toThrow(new RegExp(`in use by process ${other.pid}`));
    other.kill('SIGKILL');
    await new Promise((r) => other.on('exit', r));
    // Its owner died (kill -9 leaves the lock behind): taken over.
    const c = await WriteAheadLog.open(path);
    expect(c.nextSequence).toBe(2);
    expect(readFileSync(join(path, 'LOCK'), 'utf8')).toBe(String(process.pid));
    await c.close();
    expect(existsSync(join(path, 'LOCK'))).toBe(false);
  });

  it('remembers the committed position across opens (where a reader without a checkpoint resumes)', async () => {
    const path = fresh();
    const wal = await WriteAheadLog.open(path, { segmentBytes: 1024 });
    expect(wal.committedSequence).toBe(0);
    for (let i = 0; i < 100; i++) await wal.append([Buffer.from(`entry-${i}`.padEnd(40, '.'))]);
    await wal.truncate(70);
    expect(wal.committedSequence).toBe(70);
    await wal.truncate(50); // never moves back
    expect(wal.committedSequence).toBe(70);
    await wal.close();
    const again = await WriteAheadLog.open(path, { segmentBytes: 1024 });
    expect(again.committedSequence).toBe(70);
    expect(again.firstSequence).toBeLessThanOrEqual(70);
    await again.close();
  });

  it('keeps every acknowledged entry across kill -9 of the writing process', async () => {
    const path = fresh();
    const fixture = join(import.meta.dirname, '..', '..', '..', 'test', 'fixtures', 'wal-writer.ts');
    let acked = -1;
    for (let round = 0; round < 3; round++) {
      const child = spawn(process.execPath, ['--import', 'tsx', fixture, path], { stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        const lines = out.split('\n');
        out = lines.pop()!;
        for (const l of lines) acked = Math.max(acked, Number(l));
      });
      const start = acked;
      await new Promise<void>((resolve) => {
        const check = setInterval(() => {
          if (acked > start + 2000) {
            clearInterval(check);
            resolve();
          }
        }, 5);
      });
      child.kill('SIGKILL');
      await new Promise((r) => child.on('exit', r));
      const wal = await WriteAheadLog.open(path, { segmentBytes: 64 * 1024 });
      // Everything acknowledged is there, intact and in order (more may be: written, not yet acknowledged).
      expect(wal.nextSequence).toBeGreaterThan(acked);
      const entries = await readAll(wal, 0, acked + 1);
      entries.forEach((e, i) => expect((JSON.parse(e) as { n: number }).n).toBe(i));
      await wal.close();
    }
  });
});

describe('WalSource', () => {
  it('replays from a checkpoint, truncates once checkpoints complete, and dead-letters entries it cannot decode', async () => {
    const path = fresh();
    const wal = await WriteAheadLog.open(path, { segmentBytes: 1024 });
    for (let i = 0; i < 500; i++) await wal.append([Buffer.from(i === 7 ? '{not json' : JSON.stringify({ i }))]);
    const storage = new MemoryCheckpointStorage();
    const build = (seen: number[]): Pipeline => {
      const p = new Pipeline({ checkpointDir: storage, checkpointInterval: 0 });
      p.source(new WalSource<{ i: number }>({ logs: [{ id: 'ingest-0', dir: path }], decode: (e) => JSON.parse(text(e)) as { i: number } }), { id: 'ingest' })
        .map((r) => r.i)
        .sink({ write: (b) => void seen.push(...b.values.slice(0, b.length)) });
      p.deadLetters().sink({ write: (b) => void deadLetters.push(...b.values.slice(0, b.length)) });
      return p;
    };
    const deadLetters: unknown[] = [];
    const first: number[] = [];
    const job = build(first).start();
    while (first.length < 499) await new Promise((r) => setTimeout(r, 5));
    await job.stop(); // a final checkpoint at position 500: truncates the log up to it
    expect(first).toEqual(Array.from({ length: 500 }, (_, i) => i).filter((i) => i !== 7));
    expect(deadLetters).toHaveLength(1);
    expect(deadLetters[0]).toMatchObject({ step: 'ingest', record: { log: 'ingest-0', sequence: 7, payload: '{not json' } });
    expect(wal.firstSequence).toBeGreaterThan(400); // checkpointed segments are gone
    for (let i = 500; i < 520; i++) await wal.append([Buffer.from(JSON.stringify({ i }))]);
    const second: number[] = [];
    const job2 = build(second).start();
    while (second.length < 20) await new Promise((r) => setTimeout(r, 5));
    await job2.stop();
    expect(second).toEqual(Array.from({ length: 20 }, (_, i) => 500 + i)); // only what followed the checkpoint
    await wal.close();
  });

  it('starts from the committed position without a checkpoint, and is opened by the reader, not by constructing the source', async () => {
    const path = fresh();
    const source = new WalSource<number>({ logs: [{ id: 'w', dir: path }], decode: (e) => Number(text(e)) });
    expect(existsSync(path)).toBe(false); // constructing it opened nothing
    const run = async (): Promise<number[]> => {
      const seen: number[] = [];
      const p = new Pipeline();
      p.source(source, { id: 'in' }).sink({ write: (b) => void seen.push(...b.values.slice(0, b.length)) });
      const job = p.start();
      await new Promise((r) => setTimeout(r, 200));
      await job.stop();
      return seen;
    };
    const wal = await WriteAheadLog.open(path);
    for (let i = 0; i < 10; i++) await wal.append([Buffer.from(String(i))]);
    expect(await run()).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    for (let i = 10; i < 15; i++) await wal.append([Buffer.from(String(i))]);
    expect(await run()).toEqual([10, 11, 12, 13, 14]); // a fresh job, no checkpoint: from the committed position
    await wal.close();
  });
});
