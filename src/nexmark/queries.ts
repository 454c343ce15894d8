import type { Stream } from '../api/stream.ts';
import { valueState, listState } from '../state/descriptors.ts';
import { avg, count, maxBy } from '../window/aggregators.ts';
import { session, sliding, tumbling } from '../window/assigners.ts';
import type {
  Auction,
  Bid,
  BidRow,
  NexmarkEvent,
  Person,
  Q2Row,
  Q3Row,
  Q4Row,
  Q5Row,
  Q7Row,
  Q8Row,
  Q11Row,
} from './model.ts';

/**
 * The NEXMark queries on Spate's dataflow API. Each takes the event stream and returns its
 * result stream; queries whose results update earlier ones declare the key of their result table.
 */

export const QUERY_NAMES = ['q0', 'q1', 'q2', 'q3', 'q4', 'q5', 'q7', 'q8', 'q11'] as const;
export type QueryName = (typeof QUERY_NAMES)[number];

/** A query: how to build it, and how to read its output as a final table. */
export interface NexmarkQuery {
  readonly name: QueryName;
  readonly description: string;
  readonly build: (events: Stream<NexmarkEvent>) => Stream<object>;
  /**
   * For updating queries: the key of the result table; a later row with the same key replaces
   * the earlier one. Append-only queries have none.
   */
  readonly tableKey?: (row: object) => string | number;
}

const isBid = (e: NexmarkEvent): e is Bid => e.type === 'bid';
const isAuction = (e: NexmarkEvent): e is Auction => e.type === 'auction';
const isPerson = (e: NexmarkEvent): e is Person => e.type === 'person';

/** q0: pass-through of every bid. */
export function q0(events: Stream<NexmarkEvent>): Stream<BidRow> {
  return events
    .filter(isBid, { id: 'q0-bids' })
    .map((b): BidRow => ({ auction: b.auction, bidder: b.bidder, price: b.price, dateTime: b.dateTime, extra: b.extra }), { id: 'q0' });
}

/** q1: bid prices converted from dollars to euros. */
export function q1(events: Stream<NexmarkEvent>): Stream<BidRow> {
  return events
    .filter(isBid, { id: 'q1-bids' })
    .map((b): BidRow => ({ auction: b.auction, bidder: b.bidder, price: b.price * 0.908, dateTime: b.dateTime, extra: b.extra }), { id: 'q1' });
}

/** q2: bids on every 123rd auction. */
export function q2(events: Stream<NexmarkEvent>): Stream<Q2Row> {
  return events
    .filter((e): e is Bid => e.type === 'bid' && e.auction % 123 === 0, { id: 'q2-bids-123' })
    .map((b): Q2Row => ({ auction: b.auction, price: b.price }), { id: 'q2' });
}

const Q3_STATES = new Set(['OR', 'ID', 'CA']);

/** q3: people in OR, ID or CA selling in category 10 (a join, whichever side arrives first). */
export function q3(events: Stream<NexmarkEvent>): Stream<Q3Row> {
  const auctions = events.filter((e): e is Auction => e.type === 'auction' && e.category === 10, { id: 'q3-auctions-10' });
  const people = events.filter((e): e is Person => e.type === 'person' && Q3_STATES.has(e.state), { id: 'q3-people-or-id-ca' });
  return auctions
    .keyBy((a) => a.seller)
    .join(people.keyBy((p) => p.id), (a, p): Q3Row => ({ name: p.name, city: p.city, state: p.state, id: a.id }), { id: 'q3' });
}

/** Final price of a closed auction (q4). */
interface Closed {
  readonly auction: number;
  readonly category: number;
  readonly final: number;
}

/**
 * q4: per category, the average over auctions of the highest bid placed between the auction's
 * start and expiry (inclusive). An auction's highest bid is final once the watermark passes its
 * expiry; the per-category average is then updated.
 */
export function q4(events: Stream<NexmarkEvent>): Stream<Q4Row> {
  const auctions = events.filter(isAuction, { id: 'q4-auctions' });
  const bids = events.filter(isBid, { id: 'q4-bids' });
  const closed = auctions
    .keyBy((a) => a.id)
    .connect(bids.keyBy((b) => b.auction))
    .state({
      auction: valueState<Auction>(),
      best: valueState<number>(),
      // Bids that arrived before their auction, as [price, time].
      early: listState<[number, number]>(),
    })
    .process<Closed>(
      {
        onLeft(a, ctx) {
          ctx.state.auction.set(a);
          let best = -Infinity;
          for (const [price, time] of ctx.state.early.get()) {
            if (time >= a.dateTime && time <= a.expires && price > best) best = price;
          }
          ctx.state.early.clear();
          if (best > -Infinity) ctx.state.best.set(best);
          ctx.registerEventTimer(a.expires);
        },
        onRight(b, ctx) {
          const a = ctx.state.auction.get();
          if (a === undefined) {
            // The auction may still arrive with a start at or before this bid, until the
            // watermark passes the bid's time.
            ctx.state.early.add([b.price, b.dateTime]);
            ctx.registerEventTimer(b.dateTime);
            return;
          }
          if (b.dateTime >= a.dateTime && b.dateTime <= a.expires) {
            const best = ctx.state.best.get();
            if (best === undefined || b.price > best) ctx.state.best.set(b.price);
          }
        },
        onTimer(time, ctx) {
          const a = ctx.state.auction.get();
          if (a === undefined) {
            ctx.state.early.update(ctx.state.early.get().filter(([, t]) => t > ctx.watermark));
            return;
          }
          if (time < a.expires) return;
          const best = ctx.state.best.get();
          if (best !== undefined) ctx.emit({ auction: a.id, category: a.category, final: best });
          ctx.state.auction.clear();
          ctx.state.best.clear();
        },
      },
      { id: 'q4-winning-bids' },
    );
  return closed.keyBy((c) => c.category).aggregate(avg((c: Closed) => c.final), (category, average): Q4Row => ({ category, avg: average }), {
    id: 'q4',
  });
}

/** q5: in each 10 s window sliding every 2 s, the auction(s) with the most bids. */
export function q5(events: Stream<NexmarkEvent>): Stream<Q5Row> {
  return events
    .filter(isBid, { id: 'q5-bids' })
    .keyBy((b) => b.auction)
    .window(sliding(10_000, 2_000))
    .aggregate(count(), (auction, num, w): Q5Row => ({ auction, num, window_start: w.start, window_end: w.end }), { id: 'q5-counts' })
    .windowAll(tumbling(2_000))
    .aggregate(maxBy((r: Q5Row) => r.num), (_k, top) => top, { id: 'q5-hottest' })
    .flatMap<Q5Row>((top, out) => {
      for (const r of top) out.emit(r);
    }, { id: 'q5' });
}

/** q7: in each 10 s tumbling window, the bid(s) with the highest price. */
export function q7(events: Stream<NexmarkEvent>): Stream<Q7Row> {
  return events
    .filter(isBid, { id: 'q7-bids' })
    .windowAll(tumbling(10_000))
    .aggregate(maxBy((b: Bid) => b.price), (_k, top) => top, { id: 'q7-highest' })
    .flatMap<Q7Row>((top, out) => {
      for (const b of top) out.emit({ auction: b.auction, price: b.price, bidder: b.bidder, dateTime: b.dateTime, extra: b.extra });
    }, { id: 'q7' });
}

/**
 * q8: people who opened an auction in the same 10 s window in which they registered. Only the
 * fields the join uses go to it (as a SQL planner would project them before the shuffle): an
 * auction is ~500 bytes, its seller 8.
 */
export function q8(events: Stream<NexmarkEvent>): Stream<Q8Row> {
  const people = events.filter(isPerson, { id: 'q8-people' }).map((p) => ({ id: p.id, name: p.name }), { id: 'q8-people-fields' });
  const auctions = events.filter(isAuction, { id: 'q8-auctions' }).map((a) => ({ seller: a.seller }), { id: 'q8-auction-fields' });
  return people
    .keyBy((p) => p.id)
    .windowJoin(auctions.keyBy((a) => a.seller), tumbling(10_000))
    .coGroup<Q8Row>((_id, persons, sellers, w, out) => {
      if (sellers.length === 0) return;
      for (const p of persons) out.emit({ id: p.id, name: p.name, window_start: w.start });
    }, { id: 'q8' });
}

/**
 * q11: bidder sessions with a 10 s gap, and the number of bids in each. The sessions need only the
 * bidder (the event time travels with every record): projected before the exchange, as a SQL
 * planner would.
 */
export function q11(events: Stream<NexmarkEvent>): Stream<Q11Row> {
  return events
    .filter(isBid, { id: 'q11-bids' })
    .map((b) => b.bidder, { id: 'q11-bidders' })
    .keyBy((bidder) => bidder)
    .window(session(10_000))
    .aggregate(count(), (bidder, n, w): Q11Row => ({ bidder, bid_count: n, starttime: w.start, endtime: w.end }), { id: 'q11' });
}

export const QUERIES: Readonly<Record<QueryName, NexmarkQuery>> = {
  q0: { name: 'q0', description: 'pass-through', build: q0 },
  q1: { name: 'q1', description: 'currency conversion', build: q1 },
  q2: { name: 'q2', description: 'selection', build: q2 },
  q3: { name: 'q3', description: 'local item suggestion (join)', build: q3 },
  q4: { name: 'q4', description: 'average price per category', build: q4, tableKey: (r) => (r as Q4Row).category },
  q5: { name: 'q5', description: 'hot items (sliding window)', build: q5 },
  q7: { name: 'q7', description: 'highest bid (tumbling window)', build: q7 },
  q8: { name: 'q8', description: 'monitor new users (window join)', build: q8 },
  q11: { name: 'q11', description: 'user sessions (session window)', build: q11 },
};
