/**
 * The conformance suites can fail: a correct in-memory sink and source pass every check, and each
 * deliberately broken variant (commits twice, visible before commit, keeps the runtime's batch,
 * aborts nothing; a snapshot off by one, busy-spinning, bad input swallowed, polls beyond max)
 * fails the check about what it breaks — and only that one.
 */
import { describe, expect, it } from 'vitest';
import type { Batch } from '../runtime/batch.ts';
import type { Committable, Sink } from '../runtime/sink.ts';
import type { Source, SourceOutput, SourceReader, SourceStatus, Split } from '../runtime/source.ts';
import { runConformance, type SinkHarness, sinkConformance, type SourceHarness, sourceConformance } from './conformance.ts';

// ---- an in-memory transactional table, and a sink that can be broken on purpose ----

type SinkBug = 'none' | 'commits twice' | 'visible at write' | 'keeps the batch' | 'aborts nothing';

/** What survives the "process": committed rows, pre-committed transactions, commit records. */
class Table {
  readonly rows: number[] = [];
  readonly prepared: Array<{ id: number; instance: number; rows: number[] }> = [];
  readonly committed = new Set<string>();
}

class MemorySink implements Sink<{ id: number }, { rows: number }> {
  private pending: Array<{ id: number }> = [];
  private kept: Array<{ values: Array<{ id: number }>; length: number }> = [];
  private instance = 0;
  private parallelismOf = 1;

  constructor(
    private readonly table: Table,
    private readonly bug: SinkBug,
  ) {}

  open(ctx: { instance: number; parallelism: number }): void {
    this.instance = ctx.instance;
    this.parallelismOf = ctx.parallelism;
  }

  write(batch: Batch<{ id: number }>): void {
    if (this.bug === 'visible at write') {
      for (let i = 0; i < batch.length; i++) this.table.rows.push(batch.values[i]!.id);
      return;
    }
    // The bug: keeping the runtime's array instead of copying the records out of it.
    if (this.bug === 'keeps the batch') this.kept.push({ values: batch.values, length: batch.length });
    else for (let i = 0; i < batch.length; i++) this.pending.push({ id: batch.values[i]!.id });
  }

  preCommit(checkpointId: number): { rows: number } | undefined {
    let rows: number[];
    if (this.bug === 'keeps the batch') {
      rows = this.kept.flatMap(({ values, length }) => values.slice(0, length).map((v) => v.id));
      this.kept = [];
    } else rows = this.pending.map((r) => r.id);
    this.pending = [];
    if (rows.length === 0) return undefined;
    this.table.prepared.push({ id: checkpointId, instance: this.instance, rows });
    return { rows: rows.length };
  }

  commit(committables: ReadonlyArray<Committable<{ rows: number }>>): void {
    for (const c of committables) {
      const key = `${c.instance}/${c.checkpointId}`;
      if (this.table.committed.has(key) && this.bug !== 'commits twice') continue;
      this.table.committed.add(key);
      const tx = this.table.prepared.filter((p) => p.id === c.checkpointId && p.instance === c.instance);
      for (const p of tx) this.table.rows.push(...p.rows);
      // A correct sink forgets a transaction once committed; the broken one keeps it to apply it again.
      if (this.bug !== 'commits twice') for (const p of tx) this.table.prepared.splice(this.table.prepared.indexOf(p), 1);
    }
  }

  abort(after: number | undefined): void {
    if (this.bug === 'aborts nothing') return;
    const mine = (p: { instance: number }): boolean => p.instance % this.parallelismOf === this.instance;
    for (let i = this.table.prepared.length - 1; i >= 0; i--) {
      const p = this.table.prepared[i]!;
      if (mine(p) && (after === undefined || p.id > after)) this.table.prepared.splice(i, 1);
    }
    for (const key of [...this.table.committed]) {
      const [instance, id] = key.split('/').map(Number);
      if (instance! % this.parallelismOf === this.instance && (after === undefined || id! > after)) this.table.committed.delete(key);
    }
  }
}

function sinkHarness(bug: SinkBug): SinkHarness<{ id: number }, Table> {
  return {
    create: () => new Table(),
    sink: (table) => new MemorySink(table, bug),
    read: (table) => table.rows.map((id) => ({ id })),
    record: (i) => ({ id: i }),
    ordered: true,
  };
}

describe('sinkConformance', () => {
  it('passes a correct sink on every check', async () => {
    const results = await runConformance(sinkConformance(sinkHarness('none')));
    expect(results.filter((r) => !r.ok)).toEqual([]);
    expect(results.length).toBe(6);
  });

  const failures = async (bug: SinkBug): Promise<Array<[string, string]>> =>
    (await runConformance(sinkConformance(sinkHarness(bug)))).filter((r) => !r.ok).map((r) => [r.name, r.error!]);

  it('fails a sink that commits again what it committed', async () => {
    expect(await failures('commits twice')).toEqual(
      expect.arrayContaining([[expect.stringMatching(/^a commit redone after recovery changes nothing/), expect.stringMatching(/unexpected or duplicated 5/)]]),
    );
  });

  it('fails a sink whose rows are visible before their checkpoint commits', async () => {
    expect((await failures('visible at write'))[0]).toEqual([
      'pre-committed data is invisible until its checkpoint commits',
      expect.stringMatching(/^after write, before any checkpoint: a reader sees 10 records, expected 0/),
    ]);
  });

  it('fails a sink that keeps the batch the runtime reuses', async () => {
    expect((await failures('keeps the batch'))[0]).toEqual([
      'pre-committed data is invisible until its checkpoint commits',
      expect.stringMatching(/after commit of checkpoint 1: .*missing 10/),
    ]);
  });

  it('fails a sink that aborts nothing on recovery', async () => {
    const failed = await failures('aborts nothing');
    expect(failed.map((f) => f[0])).toEqual(['recovery aborts what never completed, and checkpoint ids after the restored one can be used again']);
    expect(failed[0]![1]).toMatch(/unexpected or duplicated 5/);
  });

  it('fails a sink without two-phase commit', async () => {
    const harness: SinkHarness<{ id: number }, number[]> = {
      create: () => [],
      sink: (rows) => ({ write: (b: Batch<{ id: number }>) => void rows.push(...b.values.slice(0, b.length).map((v) => v.id)) }),
      read: (rows) => rows.map((id) => ({ id })),
      record: (i) => ({ id: i }),
    };
    const results = await runConformance(sinkConformance(harness));
    expect(results.every((r) => !r.ok)).toBe(true);
    expect(results.map((r) => r.error)).toContain('the sink has no preCommit/commit: it writes through (at-least-once) and cannot be exactly-once');
  });
});

// ---- an in-memory input of two splits, and a source that can be broken on purpose ----

type SourceBug = 'none' | 'snapshot off by one' | 'busy-spins' | 'spins without splits' | 'swallows bad input' | 'ignores max';

/** Items of the input; item k belongs to split k % 2. */
class Input {
  readonly items: Array<{ id: number } | 'bad'> = [];
  count = 0;
  readonly waiters = new Set<() => void>();

  add(item: { id: number } | 'bad'): void {
    this.items.push(item);
    for (const w of this.waiters) w();
    this.waiters.clear();
  }
}

class MemorySource implements Source<{ id: number }> {
  readonly bounded = false;

  constructor(
    private readonly input: Input,
    private readonly bug: SourceBug,
  ) {}

  splits(): Split[] {
    return [
      { id: 's0', position: 0 },
      { id: 's1', position: 0 },
    ];
  }

  createReader(): SourceReader<{ id: number }> {
    const { input, bug } = this;
    /** Per split: its index (0 or 1) and how many of its items were read. */
    let owned: Array<{ id: string; k: number; read: number }> = [];
    const itemsOf = (k: number): Array<{ id: number } | 'bad'> => input.items.filter((_, j) => j % 2 === k);
    return {
      open(splits: readonly Split[]): void {
        owned = splits.map((s) => ({ id: s.id, k: Number(s.id.slice(1)), read: s.position as number }));
      },
      poll(out: SourceOutput<{ id: number }>, max: number): SourceStatus {
        let n = 0;
        const limit = bug === 'ignores max' ? max + 3 : max;
        for (const s of owned) {
          const items = itemsOf(s.k);
          const o = out.split(s.id);
          while (n < limit && s.read < items.length) {
            const item = items[s.read++]!;
            if (item === 'bad') {
              if (bug !== 'swallows bad input') o.deadLetter('bad', new Error('not an item'));
            } else {
              o.emit(item);
              n++;
            }
          }
        }
        return owned.some((s) => s.read < itemsOf(s.k).length) ? 'more' : 'wait';
      },
      ready(): Promise<void> {
        if (bug === 'busy-spins') return Promise.resolve();
        // What the Kafka source did: with no partitions, nothing to wait for, so ready() resolved at once.
        if (bug === 'spins without splits' && owned.length === 0) return Promise.resolve();
        if (owned.some((s) => s.read < itemsOf(s.k).length)) return Promise.resolve();
        return new Promise((resolve) => input.waiters.add(resolve));
      },
      snapshot(): Split[] {
        return owned.map((s) => ({ id: s.id, position: bug === 'snapshot off by one' ? s.read + 1 : s.read }));
      },
    };
  }
}

function sourceHarness(bug: SourceBug): SourceHarness<{ id: number }, Input> {
  const append = (input: Input, n: number): void => {
    for (let k = 0; k < n; k++) input.add({ id: input.count++ });
  };
  return {
    bounded: false,
    create: (n) => {
      const input = new Input();
      append(input, n);
      return input;
    },
    source: (input) => new MemorySource(input, bug),
    append,
    appendBad: (input) => input.add('bad'),
    record: (i) => ({ id: i }),
  };
}

describe('sourceConformance', () => {
  const failures = async (bug: SourceBug): Promise<Array<[string, string]>> =>
    (await runConformance(sourceConformance(sourceHarness(bug), { timeoutMs: 2_000 }))).filter((r) => !r.ok).map((r) => [r.name, r.error!]);

  it('passes a correct source on every check', async () => {
    const results = await runConformance(sourceConformance(sourceHarness('none')));
    expect(results.filter((r) => !r.ok)).toEqual([]);
    expect(results.map((r) => r.name)).toEqual([
      'reads every record of its input once',
      'replays exactly what followed a snapshot',
      'splits are divided between parallel readers; restored at another parallelism, it reads on exactly',
      'caught up, it waits without busy-spinning, and wakes up for new input',
      'bad input becomes a dead letter, and reading goes on',
    ]);
  });

  it('fails a source whose snapshot is off by one', async () => {
    const failed = await failures('snapshot off by one');
    expect(failed.map((f) => f[0])).toEqual([
      'replays exactly what followed a snapshot',
      'splits are divided between parallel readers; restored at another parallelism, it reads on exactly',
    ]);
    expect(failed[0]![1]).toMatch(/missing 2 records/);
  });

  it('fails a source that busy-spins when caught up', async () => {
    const failed = await failures('busy-spins');
    expect(failed.map((f) => f[0])).toEqual([
      'splits are divided between parallel readers; restored at another parallelism, it reads on exactly',
      'caught up, it waits without busy-spinning, and wakes up for new input',
    ]);
    expect(failed[0]![1]).toMatch(/a reader without splits was polled \d+ times in 300 ms: ready\(\) resolves with nothing to read \(busy-spinning/);
    expect(failed[1]![1]).toMatch(/polled \d+ times in 500 ms: ready\(\) resolves without new input \(busy-spinning/);
  });

  it('fails a source whose reader without splits busy-spins', async () => {
    const failed = await failures('spins without splits');
    expect(failed.map((f) => f[0])).toEqual(['splits are divided between parallel readers; restored at another parallelism, it reads on exactly']);
    expect(failed[0]![1]).toMatch(/a reader without splits was polled \d+ times in 300 ms/);
  });

  it('fails a source that swallows bad input', async () => {
    expect(await failures('swallows bad input')).toEqual([['bad input becomes a dead letter, and reading goes on', 'one bad input gave 0 dead letters, expected 1']]);
  });

  it('fails a source that emits more than a poll asks for', async () => {
    const failed = await failures('ignores max');
    expect(failed.length).toBeGreaterThan(0);
    expect(failed[0]![1]).toMatch(/poll\(out, \d+\) emitted \d+ records: a poll may emit at most max/);
  });
});
