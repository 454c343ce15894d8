import { describe, expect, it } from 'vitest';
import { KeyedSnapshotReader, KeyedSnapshotWriter } from '../state/snapshot.ts';
import { TimerQueue } from './timer-queue.ts';

describe('TimerQueue', () => {
  it('fires timers in time order, once per (key, time)', () => {
    const q = new TimerQueue('t');
    for (const [k, t] of [['a', 30], ['b', 10], ['a', 10], ['a', 30], ['c', 20]] as const) q.register(k, t);
    expect(q.size).toBe(4);
    const fired: string[] = [];
    q.advance(25, (k, t) => fired.push(`${k}@${t}`));
    expect(fired).toEqual(['b@10', 'a@10', 'c@20']);
    expect(q.peek()).toBe(30);
    q.advance(Infinity, (k, t) => fired.push(`${k}@${t}`));
    expect(fired.slice(3)).toEqual(['a@30']);
    expect(q.size).toBe(0);
  });

  it('skips deleted timers and fires timers registered while firing', () => {
    const q = new TimerQueue('t');
    q.register(1, 5);
    q.register(2, 5);
    q.delete(2, 5);
    const fired: string[] = [];
    q.advance(10, (k, t) => {
      fired.push(`${k}@${t}`);
      if (t === 5) {
        q.register(k, 7); // due in this same advance
        q.register(k, 50); // not yet
      }
    });
    expect(fired).toEqual(['1@5', '1@7']);
    expect(q.size).toBe(1);
  });

  it('keeps heap order under many random timers', () => {
    const q = new TimerQueue('t');
    const times: number[] = [];
    let s = 1;
    for (let i = 0; i < 2000; i++) {
      s = (s * 48271) % 2147483647;
      times.push(s % 1000);
      q.register(i, s % 1000);
    }
    const fired: number[] = [];
    q.advance(Infinity, (_k, t) => fired.push(t));
    expect(fired).toEqual([...times].sort((a, b) => a - b));
  });

  it('snapshots and restores', () => {
    const q = new TimerQueue('t');
    q.register('x', 1);
    q.register(7, 2);
    const w = new KeyedSnapshotWriter(128);
    q.snapshot(w);
    const r = new TimerQueue('t');
    r.restore(new KeyedSnapshotReader(w.finish()), 1);
    const fired: string[] = [];
    r.advance(5, (k, t) => fired.push(`${k}@${t}`));
    expect(fired).toEqual(['x@1', '7@2']);
  });
});
