import { describe, expectTypeOf, it } from 'vitest';
import {
  avg,
  count,
  listState,
  mapState,
  OutputTag,
  Pipeline,
  session,
  sliding,
  tumbling,
  valueState,
  type Stream,
  type WindowResult,
  type KeyedResult,
  type DeadLetter,
} from '../src/index.ts';

interface Click {
  user: string;
  page: string;
  ms: number;
  at: number;
}
interface Order {
  user: string;
  amount: number;
  at: number;
}

// Type-level checks: generics are inferred end to end. These fail at `npm test`'s type check.
describe('the public API infers types end to end', () => {
  const p = new Pipeline();
  const clicks = p.fromArray<Click>([], { timestamp: (c) => c.at });
  const orders = p.fromArray<Order>([]);

  it('stateless steps', () => {
    expectTypeOf(clicks.map((c) => c.ms)).toEqualTypeOf<Stream<number>>();
    expectTypeOf(clicks.filter((c) => c.ms > 3)).toEqualTypeOf<Stream<Click>>();
    const nums = p.fromArray<string | number>([]);
    expectTypeOf(nums.filter((x): x is number => typeof x === 'number')).toEqualTypeOf<Stream<number>>();
    expectTypeOf(clicks.flatMap<string>((c, out) => out.emit(c.page))).toEqualTypeOf<Stream<string>>();
    const tag = new OutputTag<Click>('slow');
    expectTypeOf(clicks.sideOutput(tag)).toEqualTypeOf<Stream<Click>>();
    expectTypeOf(p.deadLetters()).toEqualTypeOf<Stream<DeadLetter>>();
  });

  it('keys and windows', () => {
    const byUser = clicks.keyBy((c) => c.user);
    expectTypeOf(byUser.window(tumbling(1000)).aggregate(count())).toEqualTypeOf<Stream<WindowResult<string, number>>>();
    expectTypeOf(
      byUser.window(sliding(1000, 500)).aggregate(avg((c: Click) => c.ms), (user, mean, w) => ({ user, mean, end: w.end })),
    ).toEqualTypeOf<Stream<{ user: string; mean: number; end: number }>>();
    expectTypeOf(
      byUser.window(session(1000)).process<string[]>((_user, items, _w, out) => out.emit(items.map((i) => i.page))),
    ).toEqualTypeOf<Stream<string[]>>();
    expectTypeOf(clicks.keyBy((c) => c.ms).aggregate(count())).toEqualTypeOf<Stream<KeyedResult<number, number>>>();
  });

  it('state handles are typed from their declarations', () => {
    clicks
      .keyBy((c) => c.user)
      .state({ last: valueState<Click>(), pages: mapState<string, number>(), recent: listState<number>({ ttl: 1000 }) })
      .process<string>({
        onElement(click, ctx) {
          expectTypeOf(ctx.key).toEqualTypeOf<string>();
          expectTypeOf(ctx.state.last.get()).toEqualTypeOf<Click | undefined>();
          expectTypeOf(ctx.state.pages.get('x')).toEqualTypeOf<number | undefined>();
          expectTypeOf(ctx.state.recent.get()).toEqualTypeOf<readonly number[]>();
          ctx.emit(click.page);
        },
      });
  });

  it('joins', () => {
    const c = clicks.keyBy((x) => x.user);
    const o = orders.keyBy((x) => x.user);
    expectTypeOf(c.join(o, (l, r) => [l.page, r.amount] as const)).toEqualTypeOf<Stream<readonly [string, number]>>();
    c.leftJoin(o, (l, r) => {
      expectTypeOf(r).toEqualTypeOf<Order | undefined>();
      return l;
    });
    expectTypeOf(c.intervalJoin(o, { lower: -10, upper: 10 }, (l, r) => l.ms + r.amount)).toEqualTypeOf<Stream<number>>();
    expectTypeOf(c.windowJoin(o, tumbling(10)).apply((l, r) => ({ l, r }))).toEqualTypeOf<Stream<{ l: Click; r: Order }>>();
    // Keys must agree: a stream keyed by number cannot join one keyed by string.
    // @ts-expect-error key types differ
    c.join(orders.keyBy((x) => x.amount), (l) => l);
  });
});
