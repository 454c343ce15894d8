/**
 * The NEXMark event model: people register, open auctions and place bids.
 *
 * Every event is a flat object with a `type` discriminant, so a stream of events can be split
 * with a plain `filter` and written as JSONL without wrapping. Times are epoch milliseconds.
 * Field names follow the NEXMark benchmark (Beam's `Person`, `Auction` and `Bid`).
 */

/** A person registering with the auction site. */
export interface Person {
  readonly type: 'person';
  readonly id: number;
  readonly name: string;
  readonly emailAddress: string;
  readonly creditCard: string;
  readonly city: string;
  readonly state: string;
  readonly dateTime: number;
  readonly extra: string;
}

/** An item put up for auction by a seller. */
export interface Auction {
  readonly type: 'auction';
  readonly id: number;
  readonly itemName: string;
  readonly description: string;
  readonly initialBid: number;
  readonly reserve: number;
  readonly dateTime: number;
  readonly expires: number;
  readonly seller: number;
  readonly category: number;
  readonly extra: string;
}

/** A bid on an auction. */
export interface Bid {
  readonly type: 'bid';
  readonly auction: number;
  readonly bidder: number;
  readonly price: number;
  readonly dateTime: number;
  readonly extra: string;
}

/** Any NEXMark event. */
export type NexmarkEvent = Person | Auction | Bid;

/** Output row of q0 (pass-through) and q1 (currency conversion). */
export interface BidRow {
  auction: number;
  bidder: number;
  price: number;
  dateTime: number;
  extra: string;
}

/** Output row of q2 (selection). */
export interface Q2Row {
  auction: number;
  price: number;
}

/** Output row of q3 (local item suggestion). */
export interface Q3Row {
  name: string;
  city: string;
  state: string;
  id: number;
}

/** Output row of q4 (average closing price per category). */
export interface Q4Row {
  category: number;
  avg: number;
}

/** Output row of q5 (hot items). */
export interface Q5Row {
  auction: number;
  num: number;
  window_start: number;
  window_end: number;
}

/** Output row of q7 (highest bid). */
export interface Q7Row {
  auction: number;
  price: number;
  bidder: number;
  dateTime: number;
  extra: string;
}

/** Output row of q8 (monitor new users). */
export interface Q8Row {
  id: number;
  name: string;
  window_start: number;
}

/** Output row of q11 (user sessions). */
export interface Q11Row {
  bidder: number;
  bid_count: number;
  starttime: number;
  endtime: number;
}
