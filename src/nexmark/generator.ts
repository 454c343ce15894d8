import { fmix32 } from '../util/hash.ts';
import type { Auction, Bid, NexmarkEvent, Person } from './model.ts';

/**
 * The NEXMark event generator, after the reference generator of the Beam and Flink NEXMark
 * suites: per 50 events 1 person, 3 auctions and 46 bids; ids from 1000; categories 10–14; hot
 * auctions, bidders and sellers; price = round(10^(6u)·100); event n happens at
 * base + n·1000/rate ms.
 *
 * Event n is a pure function of (seed, n): each event seeds its own random stream, so any range
 * of events can be generated independently (parallel instances, replay after restore).
 */

/** Generator settings. */
export interface NexmarkConfig {
  /** Random seed (default 42). */
  readonly seed?: number;
  /** Events per second of event time (default 10 000). */
  readonly rate?: number;
  /** Event time of event 0, epoch ms (default 1 700 000 000 000). */
  readonly baseTime?: number;
}

const PERSON_PROPORTION = 1;
const AUCTION_PROPORTION = 3;
const TOTAL_PROPORTION = 50;
const FIRST_PERSON_ID = 1000;
const FIRST_AUCTION_ID = 1000;
const FIRST_CATEGORY_ID = 10;
const NUM_CATEGORIES = 5;
const HOT_AUCTION_RATIO = 100;
const HOT_BIDDER_RATIO = 100;
const HOT_SELLER_RATIO = 100;
// Defaults of NexmarkConfiguration.
const HOT_AUCTIONS = 2;
const HOT_BIDDERS = 4;
const HOT_SELLERS = 4;
const NUM_ACTIVE_PEOPLE = 1000;
const NUM_IN_FLIGHT_AUCTIONS = 100;
const PERSON_ID_LEAD = 10;
const AUCTION_ID_LEAD = 10;
const AVG_PERSON_BYTES = 200;
const AVG_AUCTION_BYTES = 500;
const AVG_BID_BYTES = 100;
const LN_1E6 = 6 * Math.LN10;
const EVENTS_FOR_IN_FLIGHT_AUCTIONS = Math.floor((NUM_IN_FLIGHT_AUCTIONS * TOTAL_PROPORTION) / AUCTION_PROPORTION);

const US_STATES = ['AZ', 'CA', 'ID', 'OR', 'WA', 'WY'];
const US_CITIES = ['Phoenix', 'Los Angeles', 'San Francisco', 'Boise', 'Portland', 'Bend', 'Redmond', 'Seattle', 'Kent', 'Cheyenne'];
const FIRST_NAMES = ['Peter', 'Paul', 'Luke', 'John', 'Saul', 'Vicky', 'Kate', 'Julie', 'Sarah', 'Deiter', 'Walter'];
const LAST_NAMES = ['Shultz', 'Abrams', 'Spencer', 'White', 'Bartels', 'Walton', 'Smith', 'Jones', 'Noris'];
const NAMES = FIRST_NAMES.flatMap((f) => LAST_NAMES.map((l) => `${f} ${l}`));

/** Random text: `extra`, names and descriptions are slices of it, so making one costs no loop. */
const POOL_SIZE = 1 << 16;
function makePool(seed: number, spaces: boolean): string {
  let s = seed;
  const codes = new Array<number>(POOL_SIZE);
  for (let i = 0; i < POOL_SIZE; i++) {
    s = fmix32(s + 0x9e3779b9);
    codes[i] = spaces && s % 13 === 0 ? 32 : 97 + (s % 26);
  }
  let out = '';
  for (let i = 0; i < POOL_SIZE; i += 4096) out += String.fromCharCode(...codes.slice(i, i + 4096));
  return out;
}
const LETTERS = makePool(7, false);
const WORDS = makePool(11, true);

/** Last person id (base 0) at event n: the current one if n is a person event. */
export function lastBase0PersonId(n: number): number {
  const epoch = Math.floor(n / TOTAL_PROPORTION);
  let offset = n - epoch * TOTAL_PROPORTION;
  if (offset >= PERSON_PROPORTION) offset = PERSON_PROPORTION - 1;
  return epoch * PERSON_PROPORTION + offset;
}

/** Last auction id (base 0) at event n: the current one if n is an auction event. */
export function lastBase0AuctionId(n: number): number {
  let epoch = Math.floor(n / TOTAL_PROPORTION);
  let offset = n - epoch * TOTAL_PROPORTION;
  if (offset < PERSON_PROPORTION) {
    epoch--;
    offset = AUCTION_PROPORTION - 1;
  } else if (offset >= PERSON_PROPORTION + AUCTION_PROPORTION) {
    offset = AUCTION_PROPORTION - 1;
  } else {
    offset -= PERSON_PROPORTION;
  }
  return epoch * AUCTION_PROPORTION + offset;
}

/**
 * Generates NEXMark events by number. Not thread-safe: one instance per source instance.
 */
export class NexmarkGenerator {
  readonly seed: number;
  readonly rate: number;
  readonly baseTime: number;
  private readonly msPerEvent: number;
  /** State of the per-event random stream. */
  private s = 0;

  constructor(config: NexmarkConfig = {}) {
    this.seed = config.seed ?? 42;
    this.rate = config.rate ?? 10_000;
    this.baseTime = config.baseTime ?? 1_700_000_000_000;
    if (!(this.rate > 0)) throw new RangeError(`rate must be > 0, got ${this.rate}`);
    this.msPerEvent = 1000 / this.rate;
  }

  /** Event time of event n. */
  time(n: number): number {
    return this.baseTime + Math.floor(n * this.msPerEvent);
  }

  /** Event n. */
  event(n: number): NexmarkEvent {
    this.reseed(n);
    const offset = n % TOTAL_PROPORTION;
    if (offset >= PERSON_PROPORTION + AUCTION_PROPORTION) return this.bid(n);
    if (offset < PERSON_PROPORTION) return this.person(n);
    return this.auction(n);
  }

  /** Seeds the random stream of event n. */
  reseed(n: number): void {
    const lo = n >>> 0;
    const hi = Math.floor(n / 4294967296) >>> 0;
    this.s = fmix32(fmix32(lo ^ this.seed) + Math.imul(hi, 0x85ebca6b) + 0x27d4eb2f);
  }

  /** Next 32 random bits (mulberry32 over the event's stream). */
  private u32(): number {
    const s = (this.s = (this.s + 0x6d2b79f5) | 0);
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return (t ^ (t >>> 14)) >>> 0;
  }

  /** Uniform integer in [0, n). */
  private int(n: number): number {
    return Math.floor((this.u32() / 4294967296) * n);
  }

  /** Uniform in [0, 1). */
  random(): number {
    return this.u32() / 4294967296;
  }

  /** round(10^(6u) * 100), computed as exp(6u ln 10): three times cheaper than Math.pow here. */
  private price(): number {
    return Math.round(Math.exp(this.random() * LN_1E6) * 100);
  }

  /** A string of `length` letters (a slice of the pool). */
  private exact(length: number): string {
    const at = this.int(POOL_SIZE - length);
    return LETTERS.substring(at, at + length);
  }

  /** Random words of up to `max` characters, like the reference `nextString`. */
  private words(max: number): string {
    const length = 3 + this.int(max - 3);
    const at = this.int(POOL_SIZE - length);
    return WORDS.substring(at, at + length).trim();
  }

  /** Padding so the event is on average `avg` bytes. */
  private extra(current: number, avg: number): string {
    if (current > avg) return '';
    const desired = avg - current;
    const delta = Math.round(desired * 0.2);
    return this.exact(desired - delta + (delta === 0 ? 0 : this.int(2 * delta)));
  }

  private nextPersonId(n: number): number {
    const numPeople = lastBase0PersonId(n) + 1;
    const active = Math.min(numPeople, NUM_ACTIVE_PEOPLE);
    return numPeople - active + this.int(active + PERSON_ID_LEAD);
  }

  private nextAuctionId(n: number): number {
    const max = lastBase0AuctionId(n);
    const min = Math.max(max - NUM_IN_FLIGHT_AUCTIONS, 0);
    return min + this.int(max - min + 1 + AUCTION_ID_LEAD);
  }

  /** The bid of event n (which must be a bid event, reseeded). */
  private bid(n: number): Bid {
    let auction: number;
    if (this.int(HOT_AUCTIONS) > 0) auction = Math.floor(lastBase0AuctionId(n) / HOT_AUCTION_RATIO) * HOT_AUCTION_RATIO;
    else auction = this.nextAuctionId(n);
    let bidder: number;
    if (this.int(HOT_BIDDERS) > 0) bidder = Math.floor(lastBase0PersonId(n) / HOT_BIDDER_RATIO) * HOT_BIDDER_RATIO + 1;
    else bidder = this.nextPersonId(n);
    const price = this.price();
    return {
      type: 'bid',
      auction: auction + FIRST_AUCTION_ID,
      bidder: bidder + FIRST_PERSON_ID,
      price,
      dateTime: this.time(n),
      extra: this.extra(32, AVG_BID_BYTES),
    };
  }

  private person(n: number): Person {
    const name = NAMES[this.int(NAMES.length)]!;
    const emailAddress = `${this.words(7)}@${this.words(5)}.com`;
    const creditCard = `${this.digits()} ${this.digits()} ${this.digits()} ${this.digits()}`;
    const city = US_CITIES[this.int(US_CITIES.length)]!;
    const state = US_STATES[this.int(US_STATES.length)]!;
    const size = 8 + name.length + emailAddress.length + creditCard.length + city.length + state.length;
    return {
      type: 'person',
      id: lastBase0PersonId(n) + FIRST_PERSON_ID,
      name,
      emailAddress,
      creditCard,
      city,
      state,
      dateTime: this.time(n),
      extra: this.extra(size, AVG_PERSON_BYTES),
    };
  }

  private digits(): string {
    return String(10000 + this.int(10000)).slice(1);
  }

  private auction(n: number): Auction {
    const timestamp = this.time(n);
    let seller: number;
    if (this.int(HOT_SELLERS) > 0) seller = Math.floor(lastBase0PersonId(n) / HOT_SELLER_RATIO) * HOT_SELLER_RATIO;
    else seller = this.nextPersonId(n);
    const category = FIRST_CATEGORY_ID + this.int(NUM_CATEGORIES);
    const initialBid = this.price();
    // Auctions last on average as long as it takes to open NUM_IN_FLIGHT_AUCTIONS more.
    const horizon = this.time(n + EVENTS_FOR_IN_FLIGHT_AUCTIONS) - timestamp;
    const expires = timestamp + 1 + this.int(Math.max(horizon * 2, 1));
    const itemName = this.words(20);
    const description = this.words(100);
    const reserve = initialBid + this.price();
    const size = 8 + itemName.length + description.length + 8 + 8 + 8 + 8 + 8;
    return {
      type: 'auction',
      id: lastBase0AuctionId(n) + FIRST_AUCTION_ID,
      itemName,
      description,
      initialBid,
      reserve,
      dateTime: timestamp,
      expires,
      seller: seller + FIRST_PERSON_ID,
      category,
      extra: this.extra(size, AVG_AUCTION_BYTES),
    };
  }
}
