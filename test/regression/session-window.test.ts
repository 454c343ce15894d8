// Regression tests for bugs found in review (fixed); the comments describe the bug each test guards against.
import { describe, expect, it } from 'vitest';
import { session, sum } from '../../src/index.ts';
import { OperatorHarness } from '../../src/testing/index.ts';

interface R {
  readonly k: string;
  readonly v?: { readonly x: number };
}

// sum() reads r.v.x: a record without `v` makes the aggregator's add() throw, and the record
// becomes a dead letter. It must then have no effect on any session.
const build = (s: import('../../src/index.ts').Stream<R>) => s.keyBy((r) => r.k).window(session(10)).aggregate(sum<R>((r) => r.v!.x));

describe('session windows and a record whose add() throws', () => {
  it('a dead-lettered record does not bridge (merge) two sessions', () => {
    const h = OperatorHarness.of<[R], unknown>(build);
    h.push({ k: 'a', v: { x: 1 } }, 0); // [0, 10)
    h.push({ k: 'a', v: { x: 2 } }, 15); // [15, 25)
    h.push({ k: 'a' }, 8); // [8, 18) would bridge them, but add() throws
    h.endInput();
    expect(h.deadLetters()).toHaveLength(1);
    // session-window-operator.ts place(): the sessions are merged, spliced and re-bounded
    // before `target.acc = add(target.acc, v)` throws.
    expect(h.values()).toEqual([
      { key: 'a', start: 0, end: 10, value: 1 },
      { key: 'a', start: 15, end: 25, value: 2 },
    ]);
  });

  it('a dead-lettered record does not extend the open session (fast path)', () => {
    const h = OperatorHarness.of<[R], unknown>(build);
    h.push({ k: 'a', v: { x: 1 } }, 0); // [0, 10)
    h.push({ k: 'a' }, 5); // would extend to [0, 15), but add() throws
    h.push({ k: 'a', v: { x: 2 } }, 12); // a new session [12, 22)
    h.endInput();
    expect(h.deadLetters()).toHaveLength(1);
    // processBatch fast path: `s.end = t + gap` runs before `s.acc = add(s.acc, v)` throws.
    expect(h.values()).toEqual([
      { key: 'a', start: 0, end: 10, value: 1 },
      { key: 'a', start: 12, end: 22, value: 2 },
    ]);
  });
});
