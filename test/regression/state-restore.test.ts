// Regression tests for bugs found in review (fixed); the comments describe the bug each test guards against.
import { describe, expect, it } from 'vitest';
import { valueState, type Stream } from '../../src/index.ts';
import { OperatorHarness } from '../../src/testing/index.ts';

describe('keyed state restore across a TTL change', () => {
  // heap-backend.ts KeyedTable.restore reads the snapshot with the stride of the *restoring*
  // table (2 without TTL, 3 with TTL), not of the table that wrote it. Its own comment says
  // "A snapshot taken without TTL restores with a fresh TTL", but the runs are misaligned.
  let ttl = 0;
  const build = (s: Stream<{ k: string; v?: number }>) =>
    s
      .keyBy((r) => r.k)
      .state({ last: valueState<number>(ttl > 0 ? { ttl } : {}) })
      .process<string>(
        {
          onElement(r, ctx) {
            if (r.v !== undefined) ctx.state.last.set(r.v);
            else ctx.emit(`${ctx.key}=${String(ctx.state.last.get())}`);
          },
        },
        { id: 'last' },
      );

  // With several keys in one key group (maxParallelism 1 here; with the default 128 it takes any
  // two keys that share a group) the flat run [k1, v1, k2, v2, ...] is misread.
  it('a snapshot taken without TTL restores every key\'s value into a state that now has a TTL', () => {
    ttl = 0;
    const h = OperatorHarness.of<[{ k: string; v?: number }], string>(build, { maxParallelism: 1 });
    h.push({ k: 'a', v: 1 }, 1).push({ k: 'b', v: 2 }, 2).push({ k: 'c', v: 3 }, 3);
    const snap = h.snapshot();
    ttl = 60_000;
    const h2 = h.restore(snap);
    h2.push({ k: 'a' }, 4).push({ k: 'b' }, 5).push({ k: 'c' }, 6);
    expect(h2.values().sort()).toEqual(['a=1', 'b=2', 'c=3']);
  });

  it('a snapshot taken with TTL restores into a state whose TTL was removed', () => {
    ttl = 60_000;
    const h = OperatorHarness.of<[{ k: string; v?: number }], string>(build, { maxParallelism: 1 });
    h.push({ k: 'a', v: 1 }, 1).push({ k: 'b', v: 2 }, 2).push({ k: 'c', v: 3 }, 3);
    const snap = h.snapshot();
    ttl = 0;
    const h2 = h.restore(snap);
    h2.push({ k: 'a' }, 4).push({ k: 'b' }, 5).push({ k: 'c' }, 6);
    expect(h2.values().sort()).toEqual(['a=1', 'b=2', 'c=3']);
  });
});
