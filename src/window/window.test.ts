import { describe, expect, it } from 'vitest';
import { OutputTag } from '../api/output-tag.ts';
import type { Stream } from '../api/stream.ts';
import type { WindowResult } from '../api/windowed-stream.ts';
import { OperatorHarness } from '../testing/operator-harness.ts';
import { avg, collectAll, count, maxBy, sum } from './aggregators.ts';
import { session, sliding, tumbling, type WindowAssigner } from './assigners.ts';
import type { LatePolicy } from './late-policy.ts';

interface Ev {
  k: string;
  v: number;
}
const ev = (k: string, v = 1): Ev => ({ k, v });
type Row = WindowResult<string, number>;

function counting(assigner: WindowAssigner, late?: LatePolicy<Ev>, tags: OutputTag<Ev>[] = []) {
  return OperatorHarness.of<[Ev], Row>(
    (s) => {
      const w = s.keyBy((e) => e.k).window(assigner);
      return (late === undefined ? w : w.onLate(late)).aggregate(count());
    },
    { sideOutputs: tags as OutputTag<unknown>[] },
  );
}

describe('tumbling windows', () => {
  it('fire per key when the watermark reaches end - 1, with timestamp end - 1', () => {
    const h = counting(tumbling(10));
    h.push(ev('a'), 0).push(ev('a'), 9).push(ev('b'), 5).push(ev('a'), 10);
    h.watermark(8);
    expect(h.output()).toEqual([]);
    h.watermark(9);
    expect(h.output()).toEqual([
      { value: { key: 'a', start: 0, end: 10, value: 2 }, time: 9 },
      { value: { key: 'b', start: 0, end: 10, value: 1 }, time: 9 },
    ]);
    h.endInput();
    expect(h.values().slice(2)).toEqual([{ key: 'a', start: 10, end: 20, value: 1 }]);
  });

  it('honour an offset and negative times', () => {
    const h = counting(tumbling(10, 3));
    h.push(ev('a'), -5).push(ev('a'), 2).push(ev('a'), 3);
    h.endInput();
    expect(h.values()).toEqual([
      { key: 'a', start: -7, end: 3, value: 2 },
      { key: 'a', start: 3, end: 13, value: 1 },
    ]);
  });

  it('skip empty stretches when the watermark jumps', () => {
    const h = counting(tumbling(10));
    h.push(ev('a'), 5).push(ev('a'), 1_000_005);
    h.watermark(2_000_000);
    expect(h.values().map((r) => r.start)).toEqual([0, 1_000_000]);
  });
});

describe('sliding windows', () => {
  it('emit every window a record falls in, from panes of gcd(size, slide)', () => {
    const h = counting(sliding(10, 4)); // panes of 2: windows start at multiples of 4
    h.push(ev('a'), 5).push(ev('a'), 11);
    h.endInput();
    expect(h.values().map((r) => [r.start, r.end, r.value])).toEqual([
      [-4, 6, 1],
      [0, 10, 1],
      [4, 14, 2],
      [8, 18, 1],
    ]);
  });

  it('aggregate with sum, avg and maxBy', () => {
    const h = OperatorHarness.of<[Ev], unknown>((s) => {
      const w = s.keyBy((e) => e.k).window(sliding(4, 2));
      return w.aggregate(sum((e: Ev) => e.v)).union(
        w.aggregate(avg((e: Ev) => e.v)) as never,
        w.aggregate(maxBy((e: Ev) => e.v)) as never,
      );
    });
    h.push(ev('a', 3), 0).push(ev('a', 5), 2).push(ev('a', 5), 3);
    h.watermark(3);
    expect(h.values()).toEqual(
      expect.arrayContaining([
        { key: 'a', start: 0, end: 4, value: 13 },
        { key: 'a', start: 0, end: 4, value: 13 / 3 },
        { key: 'a', start: 0, end: 4, value: [ev('a', 5), ev('a', 5)] },
      ]),
    );
  });
});

describe('session windows', () => {
  it('merge overlapping sessions, also when a late-arriving record bridges two', () => {
    const h = counting(session(10));
    h.push(ev('a'), 0).push(ev('a'), 25).push(ev('a'), 9); // [0,19) and [25,35)
    h.push(ev('a'), 17); // [17,27) bridges them: [0,35)
    h.push(ev('b'), 0).push(ev('b'), 10); // exactly gap apart: two sessions
    h.endInput();
    expect(h.values()).toEqual([
      { key: 'a', start: 0, end: 35, value: 4 },
      { key: 'b', start: 0, end: 10, value: 1 },
      { key: 'b', start: 10, end: 20, value: 1 },
    ]);
  });

  it('fire when the watermark passes the end of the grown session only', () => {
    const h = counting(session(10));
    h.push(ev('a'), 0);
    h.watermark(5);
    h.push(ev('a'), 8);
    h.watermark(9); // the first timer (at 9) finds the session grown to 18
    expect(h.values()).toEqual([]);
    h.watermark(17);
    expect(h.values()).toEqual([{ key: 'a', start: 0, end: 18, value: 2 }]);
  });

  it('pass every record to process() when the session closes', () => {
    const h = OperatorHarness.of<[Ev], string>((s) =>
      s
        .keyBy((e) => e.k)
        .window(session(5))
        .process<string>((key, items, w, out) => out.emit(`${key}:${items.map((i) => i.v).join('+')}@${w.start}-${w.end}`)),
    );
    h.push(ev('x', 1), 1).push(ev('x', 2), 3);
    h.endInput();
    expect(h.values()).toEqual(['x:1+2@1-8']);
  });
});

describe('late data', () => {
  const late = new OutputTag<Ev>('late');

  it('drop: counts and drops records of windows that fired', () => {
    const h = counting(tumbling(10));
    h.push(ev('a'), 1).watermark(10).push(ev('a'), 2).push(ev('a'), 12);
    h.endInput();
    expect(h.values().map((r) => [r.start, r.value])).toEqual([
      [0, 1],
      [10, 1],
    ]);
    expect(h.stepMetrics()).toMatchObject({ lateRecords: 1, lateDropped: 1 });
  });

  it('side-output: sends late records to the tag', () => {
    const h = counting(tumbling(10), { policy: 'side-output', tag: late }, [late]);
    h.push(ev('a'), 1).watermark(10).push(ev('z'), 2);
    expect(h.sideOutput(late)).toEqual([ev('z')]);
    expect(h.stepMetrics()).toMatchObject({ lateRecords: 1, lateDropped: 0 });
  });

  it('dead-letter: sends late records to the dead-letter output', () => {
    const h = counting(tumbling(10), { policy: 'dead-letter' });
    h.push(ev('a'), 1).watermark(10).push(ev('z'), 2);
    expect(h.deadLetters()).toMatchObject([{ record: ev('z'), time: 2 }]);
    expect(h.deadLetters()[0]!.error).toMatch(/late record/);
  });

  it('update: re-emits the window within the allowed lateness, then applies the beyond policy', () => {
    const h = OperatorHarness.of<[Ev], string>(
      (s) =>
        s
          .keyBy((e) => e.k)
          .window(tumbling(10))
          .onLate({ policy: 'update', allowedLateness: 5, beyond: { policy: 'side-output', tag: late } })
          .aggregate(count(), (k, n, w) => `${k}[${w.start},${w.end})=${n}${w.late ? ' (late)' : ''}`),
      { sideOutputs: [late as OutputTag<unknown>] },
    );
    h.push(ev('a'), 1).watermark(9);
    h.push(ev('a'), 2); // late, within lateness: update
    h.watermark(13);
    h.push(ev('a'), 3); // still within: 9 + 5 > 13
    h.watermark(14); // window state dropped at 9 + 5
    h.push(ev('a'), 4); // beyond
    expect(h.values()).toEqual(['a[0,10)=1', 'a[0,10)=2 (late)', 'a[0,10)=3 (late)']);
    expect(h.sideOutput(late)).toEqual([ev('a')]);
    expect(h.stepMetrics()).toMatchObject({ lateRecords: 3 });
  });

  it('update on sliding windows re-emits only the windows that already fired', () => {
    const h = OperatorHarness.of<[Ev], string>((s) =>
      s
        .keyBy((e) => e.k)
        .window(sliding(10, 5))
        .onLate({ policy: 'update', allowedLateness: 100 })
        .aggregate(count(), (_k, n, w) => `[${w.start},${w.end})=${n}${w.late ? '*' : ''}`),
    );
    h.push(ev('a'), 7).watermark(9); // fires [0,10)
    h.push(ev('a'), 8); // late for [0,10) (re-emitted), on time for [5,15)
    h.watermark(14);
    expect(h.values()).toEqual(['[0,10)=1', '[0,10)=2*', '[5,15)=2']);
  });
});

describe('window state survives snapshot and restore into fresh operators', () => {
  for (const [name, assigner] of [
    ['tumbling', tumbling(10)],
    ['sliding', sliding(10, 5)],
    ['session', session(4)],
  ] as const) {
    it(name, () => {
      const build = (s: Stream<Ev>) =>
        s.keyBy((e) => e.k).window(assigner).onLate({ policy: 'update', allowedLateness: 20 }).aggregate(collectAll<Ev>());
      const input: Array<[Ev, number]> = [];
      for (let t = 0; t < 60; t += 3) input.push([ev(t % 2 ? 'a' : 'b', t), t]);
      const straight = OperatorHarness.of<[Ev], unknown>(build);
      const first = OperatorHarness.of<[Ev], unknown>(build);
      input.forEach(([e, t], i) => {
        straight.push(e, t);
        if (i < 12) first.push(e, t);
        if (i % 4 === 3) {
          straight.watermark(t - 2);
          if (i < 12) first.watermark(t - 2);
        }
      });
      straight.push(ev('a', 99), 20).endInput(); // a late update after the cut
      const second = first.restore(first.snapshot());
      input.slice(12).forEach(([e, t], j) => {
        second.push(e, t);
        if ((j + 12) % 4 === 3) second.watermark(t - 2);
      });
      second.push(ev('a', 99), 20).endInput();
      expect([...first.values(), ...second.values()]).toEqual(straight.values());
    });
  }
});
