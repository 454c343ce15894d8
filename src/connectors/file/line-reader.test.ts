import { appendFileSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import type * as fs from 'node:fs';
import type * as fsp from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { type BadLine, type LineCursor, LineReader } from './line-reader.ts';

// `open` passes through, unless a test asks the next opens of a path to fail; `stat` runs a
// test's hook first; `watch` can be made to fail (a file system without notifications).
const failOpen = new Map<string, number>();
const onStat = new Map<string, () => void>();
let noWatch = false;
vi.mock('node:fs', async (importOriginal) => {
  const real = await importOriginal<typeof fs>();
  return {
    ...real,
    watch: (...args: unknown[]) => {
      if (noWatch) throw new Error('ENOSYS: function not implemented, watch');
      return (real.watch as (...a: unknown[]) => fs.FSWatcher)(...args);
    },
  };
});
vi.mock('node:fs/promises', async (importOriginal) => {
  const real = await importOriginal<typeof fsp>();
  return {
    ...real,
    stat: (path: string, ...rest: unknown[]) => {
      const hook = onStat.get(path);
      onStat.delete(path);
      hook?.();
      return (real.stat as (...a: unknown[]) => Promise<fs.Stats>)(path, ...rest);
    },
    open: (path: string, ...rest: unknown[]) => {
      const n = failOpen.get(path) ?? 0;
      if (n > 0) {
        failOpen.set(path, n - 1);
        return Promise.reject(Object.assign(new Error(`ENOENT: no such file or directory, open '${path}'`), { code: 'ENOENT' }));
      }
      return (real.open as (...a: unknown[]) => Promise<fsp.FileHandle>)(path, ...rest);
    },
  };
});

const dir = mkdtempSync(join(tmpdir(), 'spate-lines-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
function file(content: string): string {
  const path = join(dir, `f${n++}`);
  writeFileSync(path, content);
  return path;
}

/** Reads until `count` lines were handed out (or, a failure, 2 s passed). */
async function take(reader: LineReader, count: number): Promise<Array<string | BadLine>> {
  const got: Array<string | BadLine> = [];
  const end = Date.now() + 2000;
  while (got.length < count && Date.now() < end) {
    const status = reader.next(count - got.length, (l) => got.push(l), (b) => got.push(b));
    if (status === 'end') break;
    if (status === 'wait' && got.length < count) await Promise.race([reader.ready(), new Promise((r) => setTimeout(r, 50))]);
  }
  return got;
}

describe('LineReader, tailing', () => {
  it('does not look at an idle file again however often it is polled', async () => {
    const path = file('a\n');
    const r = new LineReader(path, { tail: true, pollInterval: 60_000 });
    await r.open();
    expect(await take(r, 1)).toEqual(['a']);
    await new Promise((resolve) => setTimeout(resolve, 20)); // the look that found the end settles
    const looks = r.looks;
    let woken = 0;
    void r.ready().then(() => woken++);
    for (let i = 0; i < 200; i++) {
      expect(r.next(100, () => undefined, () => undefined)).toBe('wait');
      await new Promise((resolve) => setImmediate(resolve));
    }
    // Before: each next() started a look (fstat + stat) and each look woke the consumer.
    expect(woken).toBe(0);
    expect(r.looks - looks).toBe(0);
    appendFileSync(path, 'b\n'); // a change notification, not the minute-long poll, brings it
    expect(await take(r, 1)).toEqual(['b']);
    expect(woken).toBe(1);
    await r.close();
  });

  it('a change that arrives while the reader is looking is not missed', async () => {
    // No notifications and a one-minute poll: only the simulated change below can wake it.
    noWatch = true;
    const path = file('a\n');
    const r = new LineReader(path, { tail: true, pollInterval: 60_000 });
    await r.open();
    noWatch = false;
    expect(await take(r, 1)).toEqual(['a']);
    // The next look finds the end of the file; while it checks whether the path was rotated,
    // a line is written and its change notification arrives.
    onStat.set(path, () => {
      appendFileSync(path, 'b\n');
      (r as unknown as { onChange: () => void }).onChange();
    });
    (r as unknown as { onChange: () => void }).onChange();
    const got: string[] = [];
    const deadline = new Promise((resolve) => setTimeout(resolve, 2000));
    while (got.length < 1) {
      // Wait on ready() alone: a reader that dropped the change never resolves it.
      if (r.next(10, (l) => got.push(l), () => undefined) === 'wait' && got.length < 1) {
        if ((await Promise.race([r.ready().then(() => 'ready'), deadline])) !== 'ready') break;
      }
    }
    await r.close();
    expect(got).toEqual(['b']);
  });

  it('a new file that vanishes between the rename check and its open does not fail the reader', async () => {
    const path = file('1\n');
    const r = new LineReader(path, { tail: true, pollInterval: 20 });
    await r.open();
    expect(await take(r, 1)).toEqual(['1']);
    failOpen.set(path, 1); // the next open of the path fails as if the file was rotated away again
    renameSync(path, `${path}.1`);
    writeFileSync(path, '2\n');
    // Before: the ENOENT of that open failed the source for good.
    expect(await take(r, 1)).toEqual(['2']);
    await r.close();
  });
});

describe('LineReader.unread', () => {
  it('hands lines out again, in order, and moves the position back', async () => {
    const r = new LineReader(file('a\nb\nc\nd\n'));
    await r.open();
    await r.ready();
    const seen: string[] = [];
    const afters: LineCursor[] = [];
    const status = r.next(
      10,
      (line) => {
        seen.push(line);
        afters.push(r.cursor());
        if (seen.length === 3) {
          // Give back b and c, as the CSV source does with the lines of an abandoned record.
          r.unread(['b', 'c'], [null, null], [afters[1]!, afters[2]!], afters[0]!);
          expect(r.position()).toMatchObject({ offset: 2, line: 1 });
        }
      },
      () => undefined,
    );
    expect(status).not.toBe('more');
    expect(seen).toEqual(['a', 'b', 'c', 'b', 'c', 'd']);
    expect(r.position()).toMatchObject({ offset: 8, line: 4 });
    await r.close();
  });
});

describe('LineReader options', () => {
  it('rejects a pollInterval or maxLineBytes that is not positive, naming it', () => {
    expect(() => new LineReader('x', { pollInterval: 0 })).toThrow('pollInterval must be a positive number, got 0');
    expect(() => new LineReader('x', { maxLineBytes: 1.5 })).toThrow('maxLineBytes must be a positive integer, got 1.5');
  });
});
