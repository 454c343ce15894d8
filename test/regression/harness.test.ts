// Regression tests for bugs found in review (fixed); the comments describe the bug each test guards against.
import { describe, expect, it } from 'vitest';
import { OutputTag } from '../../src/index.ts';
import { OperatorHarness } from '../../src/testing/index.ts';

describe('OperatorHarness side outputs', () => {
  it('captures a side output whose tag id is any valid OutputTag id (here one with a space)', () => {
    // OutputTag accepts any non-empty id but 'main'; the harness builds the capturing sink's
    // step id as `harness-side-${tag.id}`, which the step-id check rejects.
    const odd = new OutputTag<number>('odd numbers');
    const h = OperatorHarness.of<[number], number>(
      (s) => s.process<number>((n, ctx) => (n % 2 === 1 ? ctx.output(odd, n) : ctx.emit(n))),
      { sideOutputs: [odd] },
    );
    h.push(1, 1).push(2, 2);
    expect(h.values()).toEqual([2]);
    expect(h.sideOutput(odd)).toEqual([1]);
  });
});
