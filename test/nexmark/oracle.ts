/**
 * A naive batch oracle for the NEXMark queries.
 *
 * Given ALL events of an input (in any order) it computes the complete expected output of a query
 * by plain grouping over arrays and maps. It is deliberately independent of the streaming engine:
 * the only import from `src` is the type-only import of the event and row model below.
 *
 * The result never depends on the order of `events`: every computation groups by event fields and
 * sorts where an order matters (for example the float sum in q4 adds in a fixed order).
 *
 * Windows are aligned to the epoch; a window [start, end) contains the times t with
 * start <= t < end.
 */
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
} from '../../src/nexmark/model.ts';

export type QueryName = 'q0' | 'q1' | 'q2' | 'q3' | 'q4' | 'q5' | 'q7' | 'q8' | 'q11';

/** q5: sliding window size and slide, ms. */
const Q5_SIZE = 10_000;
const Q5_SLIDE = 2_000;
/** q7, q8: tumbling window size, ms. */
const TUMBLE = 10_000;
/** q11: session gap, ms. */
const SESSION_GAP = 10_000;
/** q3: the states the query selects and the category it selects. */
const Q3_STATES = new Set(['OR', 'ID', 'CA']);
const Q3_CATEGORY = 10;

// ---------------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------------

function bidsOf(events: readonly NexmarkEvent[]): Bid[] {
  return events.filter((e): e is Bid => e.type === 'bid');
}

function auctionsOf(events: readonly NexmarkEvent[]): Auction[] {
  return events.filter((e): e is Auction => e.type === 'auction');
}

function personsOf(events: readonly NexmarkEvent[]): Person[] {
  return events.filter((e): e is Person => e.type === 'person');
}

/** Groups `items` into lists by `key`. */
function groupBy<T, K>(items: readonly T[], key: (item: T) => K): Map<K, T[]> {
  const groups = new Map<K, T[]>();
  for (const item of items) {
    const k = key(item);
    const group = groups.get(k);
    if (group === undefined) groups.set(k, [item]);
    else group.push(item);
  }
  return groups;
}

/** Start of the epoch-aligned window of length `size` containing time `t`. */
function alignedStart(t: number, size: number): number {
  return Math.floor(t / size) * size;
}

// ---------------------------------------------------------------------------------------------
// The queries
// ---------------------------------------------------------------------------------------------

/** q0: pass-through of every bid. */
function q0(events: readonly NexmarkEvent[]): BidRow[] {
  return bidsOf(events).map((b) => ({
    auction: b.auction,
    bidder: b.bidder,
    price: b.price,
    dateTime: b.dateTime,
    extra: b.extra,
  }));
}

/** q1: every bid with its price converted (plain multiplication by 0.908, no rounding). */
function q1(events: readonly NexmarkEvent[]): BidRow[] {
  return bidsOf(events).map((b) => ({
    auction: b.auction,
    bidder: b.bidder,
    price: b.price * 0.908,
    dateTime: b.dateTime,
    extra: b.extra,
  }));
}

/** q2: bids on auctions whose id is a multiple of 123. */
function q2(events: readonly NexmarkEvent[]): Q2Row[] {
  return bidsOf(events)
    .filter((b) => b.auction % 123 === 0)
    .map((b) => ({ auction: b.auction, price: b.price }));
}

/** q3: every (auction of category 10, its seller living in OR, ID or CA) pair. */
function q3(events: readonly NexmarkEvent[]): Q3Row[] {
  const personsById = groupBy(
    personsOf(events).filter((p) => Q3_STATES.has(p.state)),
    (p) => p.id,
  );
  const rows: Q3Row[] = [];
  for (const a of auctionsOf(events)) {
    if (a.category !== Q3_CATEGORY) continue;
    for (const p of personsById.get(a.seller) ?? []) {
      rows.push({ name: p.name, city: p.city, state: p.state, id: a.id });
    }
  }
  return rows;
}

/**
 * q4: per category, the average over its auctions of the auction's final price, the highest bid
 * with auction.dateTime <= bid.dateTime <= auction.expires. Auctions without such a bid are left
 * out, and so are categories left without auctions.
 */
function q4(events: readonly NexmarkEvent[]): Q4Row[] {
  const bidsByAuction = groupBy(bidsOf(events), (b) => b.auction);
  const finalsByCategory = new Map<number, number[]>();
  for (const a of auctionsOf(events)) {
    let final: number | undefined;
    for (const b of bidsByAuction.get(a.id) ?? []) {
      if (a.dateTime <= b.dateTime && b.dateTime <= a.expires) {
        if (final === undefined || b.price > final) final = b.price;
      }
    }
    if (final === undefined) continue;
    const finals = finalsByCategory.get(a.category);
    if (finals === undefined) finalsByCategory.set(a.category, [final]);
    else finals.push(final);
  }
  const rows: Q4Row[] = [];
  for (const [category, finals] of finalsByCategory) {
    // Sum in ascending order so the float result does not depend on the input order.
    const sum = [...finals].sort((x, y) => x - y).reduce((acc, x) => acc + x, 0);
    rows.push({ category, avg: sum / finals.length });
  }
  return rows;
}

/**
 * q5: sliding windows of 10 s every 2 s. In each window with bids, every auction whose bid count
 * equals the window's highest bid count.
 */
function q5(events: readonly NexmarkEvent[]): Q5Row[] {
  // window start -> auction -> count
  const counts = new Map<number, Map<number, number>>();
  for (const b of bidsOf(events)) {
    // The windows holding t start at multiples of the slide in (t - size, t].
    for (
      let start = alignedStart(b.dateTime, Q5_SLIDE);
      start > b.dateTime - Q5_SIZE;
      start -= Q5_SLIDE
    ) {
      let perAuction = counts.get(start);
      if (perAuction === undefined) {
        perAuction = new Map();
        counts.set(start, perAuction);
      }
      perAuction.set(b.auction, (perAuction.get(b.auction) ?? 0) + 1);
    }
  }
  const rows: Q5Row[] = [];
  for (const [start, perAuction] of counts) {
    let max = 0;
    for (const num of perAuction.values()) if (num > max) max = num;
    for (const [auction, num] of perAuction) {
      if (num === max) {
        rows.push({ auction, num, window_start: start, window_end: start + Q5_SIZE });
      }
    }
  }
  return rows;
}

/** q7: tumbling 10 s windows; in each, every bid whose price is the window's highest price. */
function q7(events: readonly NexmarkEvent[]): Q7Row[] {
  const byWindow = groupBy(bidsOf(events), (b) => alignedStart(b.dateTime, TUMBLE));
  const rows: Q7Row[] = [];
  for (const bids of byWindow.values()) {
    let max = -Infinity;
    for (const b of bids) if (b.price > max) max = b.price;
    for (const b of bids) {
      if (b.price === max) {
        rows.push({
          auction: b.auction,
          price: b.price,
          bidder: b.bidder,
          dateTime: b.dateTime,
          extra: b.extra,
        });
      }
    }
  }
  return rows;
}

/**
 * q8: tumbling 10 s windows; each person registered in a window in which they also opened at
 * least one auction. One row per person event and window, however many auctions.
 */
function q8(events: readonly NexmarkEvent[]): Q8Row[] {
  const sellerWindows = new Set<string>();
  for (const a of auctionsOf(events)) {
    sellerWindows.add(`${a.seller}@${alignedStart(a.dateTime, TUMBLE)}`);
  }
  const rows: Q8Row[] = [];
  for (const p of personsOf(events)) {
    const start = alignedStart(p.dateTime, TUMBLE);
    if (sellerWindows.has(`${p.id}@${start}`)) {
      rows.push({ id: p.id, name: p.name, window_start: start });
    }
  }
  return rows;
}

/**
 * q11: session windows per bidder with a 10 s gap: along a bidder's sorted bid times, a new session
 * starts where the next time is >= the previous time + 10 s.
 */
function q11(events: readonly NexmarkEvent[]): Q11Row[] {
  const timesByBidder = groupBy(bidsOf(events), (b) => b.bidder);
  const rows: Q11Row[] = [];
  for (const [bidder, bids] of timesByBidder) {
    const times = bids.map((b) => b.dateTime).sort((x, y) => x - y);
    let first = times[0]!;
    let last = first;
    let count = 1;
    for (const t of times.slice(1)) {
      if (t >= last + SESSION_GAP) {
        rows.push({ bidder, bid_count: count, starttime: first, endtime: last + SESSION_GAP });
        first = t;
        count = 0;
      }
      last = t;
      count += 1;
    }
    rows.push({ bidder, bid_count: count, starttime: first, endtime: last + SESSION_GAP });
  }
  return rows;
}

// ---------------------------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------------------------

/** The complete expected result rows of `query` over all of `events` (in any order). */
export function oracle(query: QueryName, events: readonly NexmarkEvent[]): object[] {
  switch (query) {
    case 'q0':
      return q0(events);
    case 'q1':
      return q1(events);
    case 'q2':
      return q2(events);
    case 'q3':
      return q3(events);
    case 'q4':
      return q4(events);
    case 'q5':
      return q5(events);
    case 'q7':
      return q7(events);
    case 'q8':
      return q8(events);
    case 'q11':
      return q11(events);
    default: {
      const unknown: never = query;
      throw new Error(`unknown query ${String(unknown)}`);
    }
  }
}

/** `value` with the keys of every plain object sorted, so JSON.stringify is canonical. */
function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value !== null && typeof value === 'object') {
    const sorted: Record<string, unknown> = {};
    for (const key of Object.keys(value).sort()) {
      sorted[key] = sortKeys((value as Record<string, unknown>)[key]);
    }
    return sorted;
  }
  return value;
}

/**
 * Each row as JSON with its keys sorted, and the list sorted: two results are equal as multisets
 * iff their canonical forms are equal.
 */
export function canonical(rows: readonly object[]): string[] {
  return rows.map((row) => JSON.stringify(sortKeys(row))).sort();
}
