import { describe, expect, it } from 'vitest';
import { VirtualClock } from '../time/clock.ts';
import { listState, mapState, valueState } from './descriptors.ts';
import { KeyedStateBackend } from './keyed-state-backend.ts';
import { keyGroupOf, keyGroupRange } from './key-group.ts';
import { selectKeyGroups } from './snapshot.ts';

const spec = () => ({
  total: valueState<number>(),
  seen: mapState<string, number>(),
  log: listState<{ at: number }>(),
});

describe('KeyedStateBackend', () => {
  it('scopes value, map and list state to the current key', () => {
    const b = new KeyedStateBackend(new VirtualClock(), 128);
    const s = b.register(spec());
    b.currentKey = 'a';
    s.total.set(1);
    s.seen.set('x', 1);
    s.log.add({ at: 1 });
    b.currentKey = 'b';
    expect(s.total.get()).toBeUndefined();
    expect(s.seen.size()).toBe(0);
    expect(s.log.get()).toEqual([]);
    s.total.set(2);
    b.currentKey = 'a';
    expect(s.total.get()).toBe(1);
    expect([...s.seen.entries()]).toEqual([['x', 1]]);
    expect(s.log.get()).toEqual([{ at: 1 }]);
    s.seen.delete('x');
    expect(s.seen.has('x')).toBe(false);
    s.log.clear();
    s.total.clear();
    expect(b.size()).toBe(1); // only b's total remains
  });

  it('expires TTL entries that were not written in time, cheapest first', () => {
    const clock = new VirtualClock(0);
    const b = new KeyedStateBackend(clock, 128);
    const s = b.register({ v: valueState<number>({ ttl: 100 }) });
    b.currentKey = 1;
    s.v.set(1);
    clock.advance(60);
    b.currentKey = 2;
    s.v.set(2);
    expect(b.nextExpiry()).toBe(100);
    clock.advance(50); // t = 110: key 1 expired, key 2 lives until 160
    b.currentKey = 1;
    expect(s.v.get()).toBeUndefined();
    b.currentKey = 2;
    expect(s.v.get()).toBe(2);
    s.v.set(3); // refreshes to 210
    clock.advance(60);
    expect(b.expire()).toBe(0);
    clock.advance(40);
    expect(b.expire()).toBe(1);
    expect(b.size()).toBe(0);
  });

  it('refreshes TTL on read when asked', () => {
    const clock = new VirtualClock(0);
    const b = new KeyedStateBackend(clock, 128);
    const s = b.register({ v: valueState<number>({ ttl: 100, ttlRefreshOnRead: true }) });
    b.currentKey = 'k';
    s.v.set(1);
    for (let i = 0; i < 5; i++) {
      clock.advance(90);
      expect(s.v.get()).toBe(1);
    }
  });

  it('snapshots per key group and restores any subset of key groups into a fresh backend', () => {
    const clock = new VirtualClock(0);
    const b = new KeyedStateBackend(clock, 128);
    const s = b.register(spec());
    const keys = Array.from({ length: 200 }, (_, i) => (i % 2 === 0 ? i : `key-${i}`));
    for (const k of keys) {
      b.currentKey = k;
      s.total.set(typeof k === 'number' ? k : k.length);
      s.seen.set('n', 1);
      s.log.add({ at: 1 });
      s.log.add({ at: 2 });
    }
    const snap = b.snapshot();
    expect(snap.keyed.size).toBeGreaterThan(50);
    for (const kg of snap.keyed.keys()) expect(kg).toBeLessThan(128);

    // Split the key groups in two halves, as two instances would after rescaling.
    for (const [index, parallelism] of [
      [0, 2],
      [1, 2],
    ] as const) {
      const range = keyGroupRange(index, parallelism, 128);
      const fresh = new KeyedStateBackend(clock, 128, { keyed: selectKeyGroups(snap.keyed, range.start, range.end), tables: snap.tables });
      const fs = fresh.register(spec());
      for (const k of keys) {
        fresh.currentKey = k;
        const owned = keyGroupOf(k, 128) >= range.start && keyGroupOf(k, 128) < range.end;
        expect(fs.total.get()).toBe(owned ? (typeof k === 'number' ? k : k.length) : undefined);
        expect(fs.log.get()).toEqual(owned ? [{ at: 1 }, { at: 2 }] : []);
        expect(fs.seen.get('n')).toBe(owned ? 1 : undefined);
      }
    }
  });

  it('keeps TTL deadlines across a snapshot', () => {
    const clock = new VirtualClock(0);
    const b = new KeyedStateBackend(clock, 128);
    const s = b.register({ v: valueState<string>({ ttl: 100 }) });
    b.currentKey = 'k';
    s.v.set('x');
    const fresh = new KeyedStateBackend(clock, 128, b.snapshot());
    const fs = fresh.register({ v: valueState<string>({ ttl: 100 }) });
    fresh.currentKey = 'k';
    clock.advance(99);
    expect(fs.v.get()).toBe('x');
    clock.advance(1);
    expect(fs.v.get()).toBeUndefined();
  });

  it('uses the codec of a state to write snapshots', () => {
    const clock = new VirtualClock(0);
    const codec = { encode: (d: Date) => d.getTime(), decode: (x: unknown) => new Date(x as number) };
    const b = new KeyedStateBackend(clock, 128);
    const s = b.register({ when: valueState<Date>({ codec }) });
    b.currentKey = 1;
    s.when.set(new Date(42));
    const fresh = new KeyedStateBackend(clock, 128, b.snapshot());
    const fs = fresh.register({ when: valueState<Date>({ codec }) });
    fresh.currentKey = 1;
    expect(fs.when.get()).toEqual(new Date(42));
  });

  it('migrates a state whose version changed, or refuses it without a migrate function', () => {
    const clock = new VirtualClock(0);
    const b = new KeyedStateBackend(clock, 128);
    const s = b.register({ price: valueState<number>() });
    b.currentKey = 'a';
    s.price.set(250);
    const snap = b.snapshot();
    expect(snap.tables).toEqual({ 'state:price': 1 });
    const migrated = new KeyedStateBackend(clock, 128, snap);
    const m = migrated.register({
      price: valueState<{ cents: number; currency: string }>({ version: 2, migrate: (old, from) => ({ cents: (old as number) * from, currency: 'USD' }) }),
    });
    migrated.currentKey = 'a';
    expect(m.price.get()).toEqual({ cents: 250, currency: 'USD' });
    const refused = new KeyedStateBackend(clock, 128, snap);
    expect(() => refused.register({ price: valueState<number>({ version: 2 }) })).toThrow(/version 1 but is declared with version 2 and no migrate function/);
  });

  it('reports restored state that nothing declares', () => {
    const clock = new VirtualClock(0);
    const b = new KeyedStateBackend(clock, 128);
    b.register({ kept: valueState<number>(), gone: valueState<number>() });
    const fresh = new KeyedStateBackend(clock, 128, b.snapshot());
    fresh.register({ kept: valueState<number>() });
    expect(fresh.finishRestore()).toEqual(['state:gone']);
  });

  it('rejects a state declared twice', () => {
    const b = new KeyedStateBackend(new VirtualClock(), 128);
    b.register({ a: valueState<number>() });
    expect(() => b.register({ a: valueState<number>() })).toThrow(/declared twice/);
  });
});

describe('key groups', () => {
  it('spreads keys evenly and assigns contiguous ranges', () => {
    const counts = new Array<number>(128).fill(0);
    for (let i = 0; i < 128_000; i++) counts[keyGroupOf(i % 2 ? i : `user-${i}`, 128)]!++;
    expect(Math.min(...counts)).toBeGreaterThan(850);
    expect(Math.max(...counts)).toBeLessThan(1150);
    const ranges = [0, 1, 2].map((i) => keyGroupRange(i, 3, 128));
    expect(ranges).toEqual([
      { start: 0, end: 43 },
      { start: 43, end: 86 },
      { start: 86, end: 128 },
    ]);
  });
});
