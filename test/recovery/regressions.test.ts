/**
 * Runtime bugs found by the crash suites, each reproduced deterministically with a chosen crash
 * point. The comment of each test says what was wrong.
 */
import { describe, expect, it } from 'vitest';
import { count, GeneratorSource, OutputTag, type Pipeline, type Source, type SourceOutput, type SourceReader, type Split, tumbling } from '../../src/index.ts';
import { expectExactlyOnce, TestSource } from '../../src/testing/index.ts';

describe('a step with several inputs, restored from a checkpoint', () => {
  // The step's watermark was restored, but not what each input channel had reached: the channels
  // restarted at -Infinity, and a restored source does not send its (restored) watermark again
  // until it advances. So after a restart the step's watermark stayed behind until every input had
  // moved past its old watermark, and a record that the uninterrupted run judged late (here
  // 'l-late', behind watermark 20 = min(left 20, right 100)) was counted in its window instead.
  it('judges late records as the uninterrupted run did (per-input watermarks survive the restart)', async () => {
    const late = new OutputTag<string>('late');
    const build = (p: Pipeline) => {
      const left = new TestSource<string>();
      for (let i = 0; i < 12; i++) left.record(`l${i}`, 5);
      left.watermark(20).record('l-late', 15).end();
      // The right input reaches watermark 100 early, then sends records but no watermark.
      const right = new TestSource<string>().record('r0', 5).watermark(100);
      for (let i = 1; i < 30; i++) right.record(`r${i}`, 150);
      const w = p
        .source(left, { id: 'left', idleTimeout: 0 })
        .union(p.source(right.end(), { id: 'right', idleTimeout: 0 }))
        .windowAll(tumbling(10))
        .onLate({ policy: 'side-output', tag: late })
        .aggregate(count(), (_k, n, win) => `${win.start}:${n}`, { id: 'w' });
      return { w, late: w.sideOutput(late) };
    };
    // Checkpoint 1 is taken at poll 4: the right input is at watermark 100, the left at none yet.
    const { expected, actual } = await expectExactlyOnce(build, {
      crashes: [{ at: 'manifest-written', checkpoint: 1 }],
      batchSize: 1,
      checkpointEvery: 4,
      storageDelay: 0,
    });
    expect(expected.output.late).toEqual(['l-late']);
    expect(actual.incarnations.map((i) => i.restoredFrom)).toEqual([null, 1]);
  });
});

describe('a source with several splits, restored from a checkpoint', () => {
  // Each split has its own watermark (the source's is the minimum over them), but a restored
  // split's watermark track was only registered again when the reader next emitted on that split.
  // Readers poll one split at a time, so after a restart the first split polled set the source's
  // watermark alone — far ahead of the others — and their next records were late (dropped by the
  // window, here sent to the side output).
  it('keeps every split holding the watermark back from the first poll', async () => {
    const late = new OutputTag<number>('late');
    const build = (p: Pipeline) => {
      // Split k of 3 emits k, k + 3, …, at time 10·i: in order within each split, no late record.
      const src = new GeneratorSource({ count: 300, splits: 3, make: (i) => i, time: (i) => i * 10 });
      const w = p
        .source(src, { id: 'gen', idleTimeout: 0 })
        .keyBy((i) => i % 2)
        .window(tumbling(100))
        .onLate({ policy: 'side-output', tag: late })
        .aggregate(count(), { id: 'w' });
      return { w, late: w.sideOutput(late) };
    };
    const { expected, actual } = await expectExactlyOnce(build, {
      crashes: [{ at: 'manifest-written', checkpoint: 2 }, { at: 'manifest-written', checkpoint: 4 }],
      batchSize: 7,
      checkpointEvery: 4,
      storageDelay: 0,
    });
    expect(expected.output.late).toEqual([]); // (see also test/regression/multi-split-sources.test.ts)
    expect(actual.incarnations.map((i) => i.restoredFrom)).toEqual([null, 2, 4]);
  });

  // The same fix must not make a split that had finished before the checkpoint hold the watermark
  // back after the restart (its reader never emits on it again): here split 'a' ends early, and
  // split 'b' later has a record behind its own watermark, which is late only if the watermark
  // follows 'b' alone.
  it('does not let a split that finished before the checkpoint hold the watermark back', async () => {
    const late = new OutputTag<string>('late');
    const a = Array.from({ length: 5 }, (_, i) => ({ v: `a${i}`, t: i * 10 }));
    const b = Array.from({ length: 80 }, (_, i) => ({ v: `b${i}`, t: i === 60 ? 300 : i * 10 }));
    const twoSplits: Source<string> = {
      bounded: true,
      maxParallelism: 1,
      splits: () => [
        { id: 'a', position: 0 },
        { id: 'b', position: 0 },
      ],
      createReader: () => {
        const next = new Map<string, number>();
        let turn = 0;
        return {
          open(splits: readonly Split[]) {
            for (const sp of splits) next.set(sp.id, sp.position as number);
          },
          poll(out: SourceOutput<string>) {
            const ids = ['a', 'b'].filter((id) => next.get(id)! < (id === 'a' ? a : b).length);
            if (ids.length === 0) return 'end';
            const id = ids[turn++ % ids.length]!;
            const list = id === 'a' ? a : b;
            const i = next.get(id)!;
            const o = out.split(id);
            o.emit(list[i]!.v, list[i]!.t);
            next.set(id, i + 1);
            if (i + 1 === list.length) o.finish();
            return 'more';
          },
          snapshot: () => [...next].map(([id, position]) => ({ id, position })),
        } satisfies SourceReader<string>;
      },
    };
    const build = (p: Pipeline) => {
      const w = p.source(twoSplits, { id: 'two', idleTimeout: 0 }).windowAll(tumbling(50)).onLate({ policy: 'side-output', tag: late }).aggregate(count(), { id: 'w' });
      return { w, late: w.sideOutput(late) };
    };
    const { expected, actual } = await expectExactlyOnce(build, { crashes: [{ at: 'manifest-written', afterPolls: 30 }], batchSize: 1, checkpointEvery: 5, storageDelay: 0 });
    expect(expected.output.late).toEqual(['b60']);
    expect(actual.incarnations[1]!.restoredFrom).not.toBeNull();
  });
});
