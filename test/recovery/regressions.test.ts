/**
 * Runtime bugs found by the crash suites, each reproduced deterministically with a chosen crash
 * point. The comment of each test says what was wrong.
 */
import { describe, expect, it } from 'vitest';
import { count, OutputTag, type Pipeline, tumbling } from '../../src/index.ts';
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
