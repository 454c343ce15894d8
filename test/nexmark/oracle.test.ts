/**
 * Hand-computed checks of the batch NEXMark oracle. Every expected row below is written out by
 * hand from the query's definition, not computed, so these tests check the oracle itself.
 */
import { describe, it, expect } from 'vitest';
import type { Auction, Bid, NexmarkEvent, Person } from '../../src/nexmark/model.ts';
import { canonical, oracle, type QueryName } from './oracle.ts';
import { seededRandom } from '../../src/util/random.ts';

// Compact literal constructors: the fields a query does not read get fixed filler values.

function bid(auction: number, bidder: number, price: number, dateTime: number, extra = ''): Bid {
  return { type: 'bid', auction, bidder, price, dateTime, extra };
}

function person(id: number, name: string, city: string, state: string, dateTime: number): Person {
  return {
    type: 'person',
    id,
    name,
    emailAddress: `${name}@example.com`,
    creditCard: '0000 0000 0000 0000',
    city,
    state,
    dateTime,
    extra: '',
  };
}

function auction(
  id: number,
  seller: number,
  category: number,
  dateTime: number,
  expires: number,
): Auction {
  return {
    type: 'auction',
    id,
    itemName: `item${id}`,
    description: '',
    initialBid: 1,
    reserve: 1,
    dateTime,
    expires,
    seller,
    category,
    extra: '',
  };
}

/** Asserts `oracle(query, events)` equals `expected` as a multiset. */
function expectRows(query: QueryName, events: readonly NexmarkEvent[], expected: object[]): void {
  expect(canonical(oracle(query, events))).toEqual(canonical(expected));
}

/** A deterministic shuffle (mulberry32 + Fisher–Yates). */
function shuffled<T>(items: readonly T[], seed: number): T[] {
  const random = seededRandom(seed);
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

describe('canonical', () => {
  it('ignores key order and row order', () => {
    expect(canonical([{ b: 1, a: 2 }, { a: 0, b: 0 }])).toEqual(
      canonical([{ a: 0, b: 0 }, { a: 2, b: 1 }]),
    );
    expect(canonical([{ b: 1, a: 2 }])).toEqual(['{"a":2,"b":1}']);
  });

  it('compares as multisets: multiplicity and values matter', () => {
    expect(canonical([{ a: 1 }, { a: 1 }])).not.toEqual(canonical([{ a: 1 }]));
    expect(canonical([{ a: 1 }, { a: 1 }, { a: 2 }])).not.toEqual(
      canonical([{ a: 1 }, { a: 2 }, { a: 2 }]),
    );
    expect(canonical([{ a: 1 }])).not.toEqual(canonical([{ a: 1.5 }]));
    expect(canonical([{ a: 1 }])).not.toEqual(canonical([{ a: 1, b: 1 }]));
  });
});

describe('q0 pass-through', () => {
  it('outputs every bid and nothing else', () => {
    const events: NexmarkEvent[] = [
      person(1, 'Ann', 'Boise', 'ID', 0),
      bid(7, 1, 100, 5, 'x'),
      auction(7, 1, 10, 0, 100),
      bid(7, 2, 100, 5, 'x'),
      bid(8, 3, 33, 9_999, ''),
    ];
    expectRows('q0', events, [
      { auction: 7, bidder: 1, price: 100, dateTime: 5, extra: 'x' },
      { auction: 7, bidder: 2, price: 100, dateTime: 5, extra: 'x' },
      { auction: 8, bidder: 3, price: 33, dateTime: 9_999, extra: '' },
    ]);
  });

  it('keeps duplicate bids', () => {
    expectRows('q0', [bid(1, 1, 1, 1), bid(1, 1, 1, 1)], [
      { auction: 1, bidder: 1, price: 1, dateTime: 1, extra: '' },
      { auction: 1, bidder: 1, price: 1, dateTime: 1, extra: '' },
    ]);
  });
});

describe('q1 currency conversion', () => {
  it('multiplies the price by 0.908 without rounding', () => {
    const events: NexmarkEvent[] = [
      bid(1, 2, 1000, 10, 'e'),
      bid(3, 4, 33, 20),
      bid(5, 6, 0, 30),
      person(1, 'Ann', 'Boise', 'ID', 0),
    ];
    expectRows('q1', events, [
      { auction: 1, bidder: 2, price: 908, dateTime: 10, extra: 'e' },
      { auction: 3, bidder: 4, price: 29.964000000000002, dateTime: 20, extra: '' },
      { auction: 5, bidder: 6, price: 0, dateTime: 30, extra: '' },
    ]);
  });
});

describe('q2 selection', () => {
  it('keeps bids on auctions that are multiples of 123', () => {
    const events: NexmarkEvent[] = [
      bid(0, 1, 10, 0),
      bid(122, 1, 11, 0),
      bid(123, 1, 12, 0),
      bid(124, 1, 13, 0),
      bid(246, 2, 14, 0),
      bid(246, 3, 15, 0),
      auction(123, 1, 10, 0, 10),
    ];
    expectRows('q2', events, [
      { auction: 0, price: 10 },
      { auction: 123, price: 12 },
      { auction: 246, price: 14 },
      { auction: 246, price: 15 },
    ]);
  });
});

describe('q3 local item suggestion', () => {
  it('joins category-10 auctions with sellers in OR, ID or CA', () => {
    const events: NexmarkEvent[] = [
      person(1, 'Ann', 'Portland', 'OR', 0),
      person(2, 'Bob', 'Boise', 'ID', 0),
      person(3, 'Cid', 'Fresno', 'CA', 0),
      person(4, 'Dan', 'Seattle', 'WA', 0), // wrong state
      auction(100, 1, 10, 5, 50),
      auction(101, 1, 10, 6, 50), // second auction of Ann: second row
      auction(102, 2, 11, 7, 50), // wrong category
      auction(103, 3, 10, 8, 50),
      auction(104, 4, 10, 9, 50), // seller in WA
      auction(105, 9, 10, 9, 50), // seller never registered
      bid(100, 2, 5, 10),
    ];
    expectRows('q3', events, [
      { name: 'Ann', city: 'Portland', state: 'OR', id: 100 },
      { name: 'Ann', city: 'Portland', state: 'OR', id: 101 },
      { name: 'Cid', city: 'Fresno', state: 'CA', id: 103 },
    ]);
  });

  it('matches even when the auction comes before its seller', () => {
    expectRows('q3', [auction(1, 5, 10, 0, 9), person(5, 'Eve', 'Salem', 'OR', 100)], [
      { name: 'Eve', city: 'Salem', state: 'OR', id: 1 },
    ]);
  });
});

describe('q4 average closing price per category', () => {
  it('takes the max bid within [dateTime, expires] inclusive and averages per category', () => {
    const events: NexmarkEvent[] = [
      // Auction 1 (category 1) runs over [1000, 2000].
      auction(1, 9, 1, 1_000, 2_000),
      bid(1, 1, 500, 999), // before the start: ignored
      bid(1, 1, 10, 1_000), // at the start: counts
      bid(1, 2, 20, 2_000), // at the expiry: counts, and wins
      bid(1, 3, 900, 2_001), // after the expiry: ignored
      // Auction 2 (category 1) over [0, 100]: final 5.
      auction(2, 9, 1, 0, 100),
      bid(2, 1, 5, 50),
      bid(2, 1, 3, 60),
      // Auction 3 (category 2) has no bids at all: category 2 has no row.
      auction(3, 9, 2, 0, 100),
      // Auction 4 (category 3) only has bids outside its range: category 3 has no row.
      auction(4, 9, 3, 1_000, 2_000),
      bid(4, 1, 50, 999),
      bid(4, 1, 60, 2_001),
      // Auction 5 (category 4): a single bid at the exact instant the auction opens and closes.
      auction(5, 9, 4, 7_000, 7_000),
      bid(5, 1, 42, 7_000),
      // A bid on an auction that never appears: ignored.
      bid(99, 1, 1_000, 10),
    ];
    expectRows('q4', events, [
      { category: 1, avg: 12.5 }, // (20 + 5) / 2
      { category: 4, avg: 42 },
    ]);
  });

  it('averages several auctions of one category', () => {
    const events: NexmarkEvent[] = [
      auction(1, 1, 7, 0, 10),
      auction(2, 1, 7, 0, 10),
      auction(3, 1, 7, 0, 10),
      bid(1, 1, 1, 5),
      bid(2, 1, 2, 5),
      bid(3, 1, 4, 5),
      bid(3, 1, 3, 6),
    ];
    expectRows('q4', events, [{ category: 7, avg: 7 / 3 }]);
  });
});

describe('q5 hot items', () => {
  it('counts per 10 s window sliding by 2 s, with window boundaries and ties', () => {
    // b1 at 10000 is in windows starting 2000..10000 (it is the end of window 0 and the start
    // of window 10000); b2 at 11999 is in windows 2000..10000 (the last ms of window 2000);
    // b3 at 12000 is in windows 4000..12000 (just past the end of window 2000).
    const events: NexmarkEvent[] = [
      bid(1, 1, 1, 10_000),
      bid(2, 1, 1, 11_999),
      bid(2, 1, 1, 12_000),
      person(1, 'Ann', 'Boise', 'ID', 0),
    ];
    expectRows('q5', events, [
      // Window [2000, 12000): auction 1 once, auction 2 once: a tie, both rows.
      { auction: 1, num: 1, window_start: 2_000, window_end: 12_000 },
      { auction: 2, num: 1, window_start: 2_000, window_end: 12_000 },
      // Windows 4000..10000 hold all three bids: auction 2 wins with 2.
      { auction: 2, num: 2, window_start: 4_000, window_end: 14_000 },
      { auction: 2, num: 2, window_start: 6_000, window_end: 16_000 },
      { auction: 2, num: 2, window_start: 8_000, window_end: 18_000 },
      { auction: 2, num: 2, window_start: 10_000, window_end: 20_000 },
      // Window [12000, 22000) only holds b3.
      { auction: 2, num: 1, window_start: 12_000, window_end: 22_000 },
    ]);
  });

  it('places a bid in exactly five windows', () => {
    expectRows('q5', [bid(3, 1, 1, 7_000)], [
      { auction: 3, num: 1, window_start: -2_000, window_end: 8_000 },
      { auction: 3, num: 1, window_start: 0, window_end: 10_000 },
      { auction: 3, num: 1, window_start: 2_000, window_end: 12_000 },
      { auction: 3, num: 1, window_start: 4_000, window_end: 14_000 },
      { auction: 3, num: 1, window_start: 6_000, window_end: 16_000 },
    ]);
  });
});

describe('q7 highest bid', () => {
  it('outputs every bid at the max price of its tumbling 10 s window', () => {
    const events: NexmarkEvent[] = [
      // Window [0, 10000): a tie at 5 between its first and last millisecond.
      bid(1, 11, 5, 0, 'a'),
      bid(2, 12, 3, 5_000, 'b'),
      bid(3, 13, 5, 9_999, 'c'),
      // Window [10000, 20000): 10000 is its start, not the end of the previous window.
      bid(4, 14, 7, 10_000, 'd'),
      bid(5, 15, 2, 15_000, 'e'),
      bid(6, 16, 7, 19_999, 'f'),
      // Window [20000, 30000): a lone low bid still wins its own window.
      bid(7, 17, 1, 20_000, 'g'),
      auction(1, 1, 1, 0, 100_000),
    ];
    expectRows('q7', events, [
      { auction: 1, price: 5, bidder: 11, dateTime: 0, extra: 'a' },
      { auction: 3, price: 5, bidder: 13, dateTime: 9_999, extra: 'c' },
      { auction: 4, price: 7, bidder: 14, dateTime: 10_000, extra: 'd' },
      { auction: 6, price: 7, bidder: 16, dateTime: 19_999, extra: 'f' },
      { auction: 7, price: 1, bidder: 17, dateTime: 20_000, extra: 'g' },
    ]);
  });
});

describe('q8 monitor new users', () => {
  it('joins new persons with their auctions in the same tumbling 10 s window', () => {
    const events: NexmarkEvent[] = [
      // Person 1 registers at 10000 and opens two auctions in [10000, 20000): one row.
      person(1, 'Ann', 'Boise', 'ID', 10_000),
      auction(100, 1, 1, 12_000, 50_000),
      auction(101, 1, 1, 19_999, 50_000),
      // Person 2 registers at 19999 but opens an auction at 20000, the next window: no row.
      person(2, 'Bob', 'Boise', 'ID', 19_999),
      auction(102, 2, 1, 20_000, 50_000),
      // Person 3 opens an auction at 20000 and registers at 29999: same window, one row.
      auction(103, 3, 1, 20_000, 50_000),
      person(3, 'Cid', 'Boise', 'ID', 29_999),
      // Person 4 never opens an auction; seller 5 never registers.
      person(4, 'Dan', 'Boise', 'ID', 10_000),
      auction(104, 5, 1, 10_000, 50_000),
      bid(100, 4, 10, 13_000),
    ];
    expectRows('q8', events, [
      { id: 1, name: 'Ann', window_start: 10_000 },
      { id: 3, name: 'Cid', window_start: 20_000 },
    ]);
  });
});

describe('q11 user sessions', () => {
  it('splits a bidder at gaps of 10 s or more and keeps gaps of 9999 ms', () => {
    const events: NexmarkEvent[] = [
      // Bidder 1: 0 -> 9999 is a gap of 9999 (same session), 9999 -> 19999 is a gap of exactly
      // 10000 (new session).
      bid(1, 1, 1, 0),
      bid(1, 1, 1, 9_999),
      bid(1, 1, 1, 19_999),
      // Bidder 2: one bid.
      bid(1, 2, 1, 5_000),
      // Bidder 3, out of order and with two bids at the same instant.
      bid(1, 3, 1, 30_000),
      bid(1, 3, 1, 100),
      bid(1, 3, 1, 100),
      // Bidder 4: a chain of gaps under 10 s spanning far more than 10 s is one session.
      bid(1, 4, 1, 0),
      bid(1, 4, 1, 9_000),
      bid(1, 4, 1, 18_000),
      bid(1, 4, 1, 27_999),
      person(1, 'Ann', 'Boise', 'ID', 0),
    ];
    expectRows('q11', events, [
      { bidder: 1, bid_count: 2, starttime: 0, endtime: 19_999 },
      { bidder: 1, bid_count: 1, starttime: 19_999, endtime: 29_999 },
      { bidder: 2, bid_count: 1, starttime: 5_000, endtime: 15_000 },
      { bidder: 3, bid_count: 2, starttime: 100, endtime: 10_100 },
      { bidder: 3, bid_count: 1, starttime: 30_000, endtime: 40_000 },
      { bidder: 4, bid_count: 4, starttime: 0, endtime: 37_999 },
    ]);
  });
});

describe('order independence', () => {
  // A small mixed input on which every query has a non-empty answer.
  const events: NexmarkEvent[] = [
    person(1, 'Ann', 'Portland', 'OR', 1_000),
    person(2, 'Bob', 'Seattle', 'WA', 2_000),
    person(3, 'Cid', 'Fresno', 'CA', 12_000),
    auction(123, 1, 10, 1_500, 30_000),
    auction(124, 2, 10, 2_500, 5_000),
    auction(125, 3, 11, 13_000, 20_000),
    auction(246, 3, 10, 14_000, 14_000),
    bid(123, 2, 10, 2_000),
    bid(123, 3, 30, 3_000),
    bid(124, 1, 30, 4_999),
    bid(124, 3, 99, 5_001),
    bid(125, 1, 7, 13_500),
    bid(246, 2, 33, 14_000),
    bid(123, 2, 12, 21_000),
    bid(125, 1, 8, 29_999),
  ];
  const queries: QueryName[] = ['q0', 'q1', 'q2', 'q3', 'q4', 'q5', 'q7', 'q8', 'q11'];

  for (const query of queries) {
    it(`${query} gives the same multiset for reversed and shuffled input`, () => {
      const expected = canonical(oracle(query, events));
      expect(expected.length).toBeGreaterThan(0);
      expect(canonical(oracle(query, [...events].reverse()))).toEqual(expected);
      for (let seed = 1; seed <= 5; seed++) {
        expect(canonical(oracle(query, shuffled(events, seed)))).toEqual(expected);
      }
    });
  }

  it('q4 averages float prices the same way whatever the arrival order', () => {
    // Float addition is not associative: (0.1 + 0.2) + 0.3 !== 0.1 + (0.2 + 0.3).
    const fractional: NexmarkEvent[] = [
      auction(1, 1, 5, 0, 10),
      auction(2, 1, 5, 0, 10),
      auction(3, 1, 5, 0, 10),
      auction(4, 1, 5, 0, 10),
      bid(1, 1, 0.1, 1),
      bid(2, 1, 0.2, 1),
      bid(3, 1, 0.3, 1),
      bid(4, 1, 0.7, 1),
    ];
    const expected = canonical(oracle('q4', fractional));
    expect(canonical(oracle('q4', [...fractional].reverse()))).toEqual(expected);
    for (let seed = 1; seed <= 20; seed++) {
      expect(canonical(oracle('q4', shuffled(fractional, seed)))).toEqual(expected);
    }
  });

  it('q4 on this input matches the hand-computed answer', () => {
    // 123 over [1500, 30000]: max(10, 30, 12) = 30. 124 over [2500, 5000]: 30 (99 is late).
    // 246 over [14000, 14000]: 33. Category 10: (30 + 30 + 33) / 3 = 31. 125 (category 11)
    // over [13000, 20000]: 7 (8 at 29999 is late).
    expectRows('q4', shuffled(events, 42), [
      { category: 10, avg: 31 },
      { category: 11, avg: 7 },
    ]);
  });

  it('q3 and q8 on this input match the hand-computed answer', () => {
    expectRows('q3', shuffled(events, 7), [
      { name: 'Ann', city: 'Portland', state: 'OR', id: 123 },
      { name: 'Cid', city: 'Fresno', state: 'CA', id: 246 },
    ]);
    expectRows('q8', shuffled(events, 8), [
      { id: 1, name: 'Ann', window_start: 0 },
      { id: 2, name: 'Bob', window_start: 0 },
      { id: 3, name: 'Cid', window_start: 10_000 },
    ]);
  });
});

describe('scale', () => {
  it('handles 200k events', () => {
    const big: NexmarkEvent[] = [];
    for (let i = 0; i < 200_000; i++) {
      const t = i * 5;
      if (i % 50 === 0) big.push(person(i, `p${i}`, 'Boise', i % 100 === 0 ? 'ID' : 'WA', t));
      else if (i % 50 === 1) {
        big.push(auction(i, i - 1, Math.floor(i / 50) % 20, t, t + 20_000));
      } else big.push(bid(i - (i % 50) + 1, i % 997, (i * 7919) % 1000, t));
    }
    const queries: QueryName[] = ['q0', 'q1', 'q2', 'q3', 'q4', 'q5', 'q7', 'q8', 'q11'];
    for (const query of queries) {
      expect(oracle(query, big).length).toBeGreaterThan(0);
    }
  });
});
