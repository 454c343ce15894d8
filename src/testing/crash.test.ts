import { describe, expect, it } from 'vitest';
import { count, Pipeline, tumbling } from '../index.ts';
import type { Batch } from '../runtime/batch.ts';
import type { Sink } from '../runtime/sink.ts';
import type { Source, SourceOutput, SourceReader, Split } from '../runtime/source.ts';
import {
  canonicalKey,
  CommittedStore,
  CRASH_POINTS,
  CrashPoint,
  type CrashSpec,
  diffMultisets,
  ExactlyOnceViolation,
  expectExactlyOnce,
  formatCrashes,
  MemoryCheckpointStorage,
  runWithCrashes,
  TestSource,
  TransactionalCollectSink,
} from './index.ts';

/** Numbers 0..n-1 as a replayable source whose snapshot may lie about its position by `skew`. */
function numbers(n: number, skew = 0): Source<number> {
  return {
    bounded: true,
    maxParallelism: 1,
    splits: () => [{ id: 'n', position: 0 }],
    createReader: (): SourceReader<number> => {
      let next = 0;
      return {
        open(splits: readonly Split[]) {
          next = splits[0]!.position as number;
        },
        poll(out: SourceOutput<number>, max: number) {
          for (let k = 0; k < max && next < n; k++) out.emit(next, next++);
          return next < n ? 'more' : 'end';
        },
        snapshot: () => [{ id: 'n', position: Math.max(0, Math.min(n, next + skew)) }],
      };
    },
  };
}

describe('CommittedStore and TransactionalCollectSink', () => {
  it('commit only on checkpoints: a run commits everything by its final checkpoint', async () => {
    const store = new CommittedStore<number>();
    const p = new Pipeline();
    p.fromArray([1, 2, 3]).sink(new TransactionalCollectSink(store));
    await p.run({ checkpointDir: new MemoryCheckpointStorage() });
    expect(store.values).toEqual([1, 2, 3]);
    expect(store.preparedRows).toBe(0);
    expect(store.problems).toEqual([]);
  });

  it('the TSDoc example: a sink bound to a shared store', async () => {
    const store = new CommittedStore<string>();
    const storage = new MemoryCheckpointStorage();
    const p = new Pipeline();
    p.fromArray(['a', 'b']).sink(new TransactionalCollectSink(store), { id: 'out' });
    await p.run({ checkpointDir: storage });
    expect(store.values).toEqual(['a', 'b']);
  });

  it('two-phase: written rows are invisible until commit, commit is idempotent, abort drops later transactions', () => {
    const store = new CommittedStore<string>();
    const sink = new TransactionalCollectSink(store);
    sink.open({ stepId: 'out', instance: 0, parallelism: 1, clock: { now: () => 0 }, restoredCheckpoint: undefined, deadLetter: () => undefined });
    const batch = (values: string[]): Batch<string> => ({ values, times: new Float64Array(values.length), length: values.length }) as unknown as Batch<string>;
    sink.write(batch(['a', 'b']));
    expect(store.values).toEqual([]);
    expect(sink.preCommit(1)).toEqual({ rows: 2 });
    expect(store.values).toEqual([]);
    expect(store.preparedRows).toBe(2);
    sink.write(batch(['c']));
    sink.preCommit(2);
    void sink.commit([{ checkpointId: 1, instance: 0, data: { rows: 2 } }]);
    void sink.commit([{ checkpointId: 1, instance: 0, data: { rows: 2 } }]);
    expect(store.values).toEqual(['a', 'b']);
    void sink.abort(1);
    expect(store.preparedRows).toBe(0);
    // A commit of a transaction that was aborted is a protocol violation: its rows are lost.
    void sink.commit([{ checkpointId: 2, instance: 0, data: { rows: 1 } }]);
    expect(store.problems).toHaveLength(1);
    expect(store.problems[0]).toMatch(/commit of checkpoint 2 .*nothing was pre-committed/);
  });

  it('crash() fences off the sinks bound before it: a dead job changes nothing', () => {
    const store = new CommittedStore<string>();
    const old = new TransactionalCollectSink(store);
    const batch = { values: ['x'], times: new Float64Array(1), length: 1 } as unknown as Batch<string>;
    old.write(batch);
    old.preCommit(1);
    store.crash();
    expect(old.alive).toBe(false);
    let settled = false;
    void old.commit([{ checkpointId: 1, instance: 0, data: { rows: 1 } }]).then(() => (settled = true));
    old.write(batch);
    expect(old.preCommit(2)).toBeUndefined();
    expect(store.values).toEqual([]);
    expect(store.preparedRows).toBe(1); // prepared before the crash: durable, for recovery to decide
    const fresh = new TransactionalCollectSink(store);
    expect(fresh.alive).toBe(true);
    void fresh.commit([{ checkpointId: 1, instance: 0, data: { rows: 1 } }]);
    expect(store.values).toEqual(['x']);
    return Promise.resolve().then(() => expect(settled).toBe(false)); // a dead job's commit never finishes
  });
});

describe('runWithCrashes', () => {
  it('the TSDoc example: a map, committed exactly once despite the crashes', async () => {
    const run = await runWithCrashes((p) => p.fromArray([1, 2, 3]).map((n) => n * 2), { crashes: 2 });
    expect([...run.output].sort()).toEqual([2, 4, 6]);
    expect(run.uninterrupted?.crashes).toEqual([]);
  });

  it('crashes at every kind of point when asked, and says where', async () => {
    const build = (p: Pipeline) => p.source(numbers(200), { id: 'n' }).keyBy((n) => n % 5).window(tumbling(10)).aggregate(count(), { id: 'w' });
    for (const at of CRASH_POINTS) {
      const plan: CrashSpec[] = [{ at, afterPolls: 10 }, { at, afterPolls: 10 }];
      const { actual, expected } = await expectExactlyOnce(build, { crashes: plan, batchSize: 4, checkpointEvery: 3 });
      expect(actual.crashes.map((c) => c.at)).toEqual([at, at]);
      expect(actual.crashes.every((c) => c.polls >= 10)).toBe(true);
      expect(actual.incarnations).toHaveLength(3);
      expect(expected.output).toHaveLength(100);
      if (at !== CrashPoint.Poll && at !== CrashPoint.Write) expect(actual.crashes[0]!.checkpoint).toBeGreaterThan(0);
    }
  });

  it('crashes at the point of a chosen checkpoint, and during recovery', async () => {
    const build = (p: Pipeline) => p.source(numbers(100), { id: 'n' }).map((n) => n + 1);
    const { actual } = await expectExactlyOnce(build, {
      crashes: [{ at: 'manifest-written', checkpoint: 2 }, { at: 'commit', afterPolls: 0 }],
      batchSize: 2,
      checkpointEvery: 2,
    });
    expect(actual.crashes[0]).toMatchObject({ at: 'manifest-written', checkpoint: 2, object: 'chk-0000000002/_MANIFEST', restoredFrom: null });
    // The second run restored checkpoint 2 (complete, never committed) and died re-committing what
    // it holds (checkpoint 1's transaction too, if its commit had not finished when 2 was taken).
    expect(actual.crashes[1]).toMatchObject({ at: 'commit', recovery: true, restoredFrom: 2 });
    expect(actual.crashes[1]!.checkpoint).toBeLessThanOrEqual(2);
    expect(actual.incarnations.map((i) => i.restoredFrom)).toEqual([null, 2, 2]);
    expect(formatCrashes(actual.crashes)).toMatch(/^run 0: crashed at manifest-written of checkpoint 2 after \d+ polls \(from the start; /);
  });

  it('a crash is abrupt: no final checkpoint, no close, nothing flushed', async () => {
    const sinks: Array<{ preCommits: number; closed: boolean }> = [];
    // (The planner also creates a sink to read its traits; only the opened ones run.)
    const spy = (): Sink<number> => {
      const s = { preCommits: 0, closed: false };
      return { open: () => void sinks.push(s), write: () => undefined, preCommit: () => void s.preCommits++, close: () => void (s.closed = true) };
    };
    await runWithCrashes(
      (p) => {
        const s = p.source(numbers(100), { id: 'n' });
        s.sink(spy, { id: 'spy' });
        return s;
      },
      { crashes: [{ at: 'poll', afterPolls: 5 }], batchSize: 2, checkpointEvery: 0 },
    );
    // The killed run neither took the final checkpoint a graceful stop takes nor closed its sink.
    expect(sinks).toHaveLength(2);
    expect(sinks[0]).toEqual({ preCommits: 0, closed: false });
    expect(sinks[1]).toEqual({ preCommits: 1, closed: true });
  });

  it('names the rows a source that skips input loses on restore', async () => {
    const error = await expectExactlyOnce((p) => p.source(numbers(50, 3), { id: 'n' }), {
      crashes: [{ at: 'manifest-written', afterPolls: 0 }],
      batchSize: 4,
      checkpointEvery: 2,
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ExactlyOnceViolation);
    expect((error as Error).message).toMatch(/3 missing, 0 extra/);
    expect((error as ExactlyOnceViolation).diffs.get('')!.missing).toHaveLength(3);
  });

  it('names the rows a source that replays too much duplicates', async () => {
    const error = await expectExactlyOnce((p) => p.source(numbers(50, -2), { id: 'n' }), {
      crashes: [{ at: 'manifest-written', afterPolls: 0 }],
      batchSize: 4,
      checkpointEvery: 2,
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ExactlyOnceViolation);
    expect((error as Error).message).toMatch(/0 missing, 2 extra \(duplicated or wrong\)/);
  });

  it('a TestSource restored from a checkpoint taken after its end ends again (it used to wait forever)', async () => {
    // With periodic checkpoints off, checkpoint 1 is the final one, taken after the script ended.
    const run = await runWithCrashes(
      (p) => p.source(new TestSource<string>().record('a', 1).record('b', 2).end(), { id: 'in' }),
      { crashes: [{ at: 'manifest-written', checkpoint: 1 }], checkpointEvery: 0, timeout: 5_000 },
    );
    expect(run.incarnations.map((i) => i.restoredFrom)).toEqual([null, 1]);
    expect(run.output).toEqual(['a', 'b']);
  });

  it('checks several named outputs', async () => {
    const { actual } = await expectExactlyOnce(
      (p) => {
        const n = p.source(numbers(60), { id: 'n' });
        return { even: n.filter((x) => x % 2 === 0, { id: 'even' }), odd: n.filter((x) => x % 2 === 1, { id: 'odd' }) };
      },
      { crashes: 3, seed: 9, batchSize: 3 },
    );
    expect(actual.output.even).toHaveLength(30);
    expect(actual.output.odd).toHaveLength(30);
  });
});

describe('multisets', () => {
  it('diffMultisets counts missing and extra copies (the TSDoc example)', () => {
    const d = diffMultisets([1, 2, 2, 3], [3, 2, 1, 1]);
    expect(d.equal).toBe(false);
    expect(d.missing).toEqual([{ item: 2, count: 1 }]);
    expect(d.extra).toEqual([{ item: 1, count: 1 }]);
    expect(diffMultisets([{ a: 1, b: 2 }], [{ b: 2, a: 1 }]).equal).toBe(true);
  });

  it('canonicalKey is structural and spells out what JSON cannot', () => {
    expect(canonicalKey({ b: 1, a: [NaN, undefined] })).toBe(canonicalKey({ a: [NaN, undefined], b: 1 }));
    expect(canonicalKey([undefined])).not.toBe(canonicalKey([null]));
    expect(canonicalKey(-0)).not.toBe(canonicalKey(0));
    expect(canonicalKey(new Map([[1, 'a'], [2, 'b']]))).toBe(canonicalKey(new Map([[2, 'b'], [1, 'a']])));
    expect(canonicalKey(new Uint8Array([1, 2]))).not.toBe(canonicalKey([1, 2]));
    expect(canonicalKey(10n)).toBe('{"$":"10n"}');
  });
});
