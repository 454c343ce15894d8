// Regression tests for bugs found in review (fixed); the comments describe the bug each test guards against.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { OperatorHarness } from '../../src/testing/index.ts';

const fixture = fileURLToPath(new URL('./fixtures/window-nonfinite-time.ts', import.meta.url));

/** Runs the fixture in a child process (a hang cannot be caught in-process): 5 s, 512 MB heap. */
function runFixture(kind: string): { status: number | null; signal: NodeJS.Signals | null; stdout: string } {
  const r = spawnSync(process.execPath, ['--max-old-space-size=512', '--import', 'tsx', fixture, kind], {
    encoding: 'utf8',
    timeout: 5_000,
    killSignal: 'SIGKILL',
  });
  return { status: r.status, signal: r.signal, stdout: r.stdout };
}

describe('records with a non-finite timestamp emitted by a process function', () => {
  it('a tumbling window does not hang: the NaN-timed record is dead-lettered and the job ends', () => {
    // SlicedWindowOperator puts t = NaN into pane NaN; onWatermark then loops forever
    // (end = max(nextEnd, NaN) = NaN, `NaN - 1 > watermark` is false, nextEnd = NaN + slide ...),
    // emitting results until the heap is exhausted.
    const r = runFixture('tumbling');
    expect(r.signal).toBeNull(); // SIGKILL: still running after 5 s
    expect(r.status).toBe(0); // not killed by running out of heap
    expect(JSON.parse(r.stdout)).toEqual({
      out: [
        { key: 'a', start: 0, end: 10, value: 1 },
        { key: 'b', start: 0, end: 10, value: 1 },
      ],
      dead: 1,
    });
  }, 30_000);

  it('a session window does not silently lose the NaN-timed record (it should be a dead letter)', () => {
    const r = runFixture('session');
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout).dead).toBe(1);
  }, 30_000);
});

describe('TimerQueue with a NaN timer', () => {
  it('one NaN event-time timer does not block the other keys\' timers', () => {
    const h = OperatorHarness.of<[{ k: string; delay?: number }], string>((s) =>
      s.keyBy((r) => r.k).process<string>({
        onElement(r, ctx) {
          // `delay` is missing on one record: ctx.timestamp + undefined = NaN.
          ctx.registerEventTimer(ctx.timestamp + (r.delay as number));
        },
        onTimer(time, ctx) {
          ctx.emit(`${ctx.key}@${time}`);
        },
      }),
    );
    h.push({ k: 'a', delay: 9 }, 1); // timer at 10
    h.push({ k: 'b' }, 2); // timer at NaN: bubbles to the heap root (NaN <= x is always false)
    h.push({ k: 'c', delay: 17 }, 3); // timer at 20
    h.watermark(15);
    // The heap is now [20, 10, NaN]: its root (20) is not due, so timer 10 never fires.
    expect(h.values()).toEqual(['a@10']);
    h.watermark(25);
    expect(h.values()).toEqual(['a@10', 'c@20']);
  });
});
