import type { Batch } from '../runtime/batch.ts';
import type { Operator, OperatorContext } from '../runtime/operator.ts';
import { defaultCodec, type StateCodec } from '../state/codec.ts';
import { checkKey, type Key } from '../state/key-group.ts';
import { KeyedTable } from '../state/keyed-table.ts';
import { TimerQueue } from '../time/timer-queue.ts';
import { TimedEmitter } from '../operators/emitter.ts';
import { maxWindowTime, type SessionWindows, timeOutOfRange, type WindowInfo } from './assigners.ts';
import { LateHandler, type LatePolicy } from './late-policy.ts';
import type { WindowAccumulator, WindowInput } from './sliced-window-operator.ts';
import type { WindowFunction } from './window-function.ts';

interface Session {
  start: number;
  /** Exclusive: last record time + gap. */
  end: number;
  acc: unknown;
  /** Whether the result was emitted (the session is kept only for late updates). */
  fired: boolean;
  /** Time of this session's pending timer. */
  timer: number;
}

/**
 * Session windows: per key, disjoint sessions sorted by start. A record at t opens [t, t + gap)
 * and merges every session it overlaps. A session fires when the watermark reaches end - 1.
 *
 * Timers are lazy: extending a session does not move its timer; when the timer comes due and the
 * session has grown, the timer is registered again at the new end. So a run of records that keeps
 * a session open costs no timer work per record.
 */
export class SessionWindowOperator implements Operator<unknown, unknown> {
  private readonly gap: number;
  /** Largest |event time| accepted: beyond it t + gap can round to t (see maxWindowTime). */
  private readonly maxTime: number;
  /** Key → its sessions, sorted by start (the operator's keyed state). */
  private sessions!: Map<Key, Session[]>;
  /** Derived from the sessions (rebuilt on restore), so not part of the state. */
  private readonly timers = new TimerQueue('session-timers');
  private ctx!: OperatorContext<unknown>;
  private late!: LateHandler;
  private lateness = 0;
  private emitter!: TimedEmitter<unknown>;
  private readonly codec: StateCodec<unknown>;
  private readonly onTimer = (key: Key, time: number): void => this.timer(key, time);

  constructor(
    private readonly assigner: SessionWindows,
    private readonly inputs: readonly WindowInput[],
    private readonly acc: WindowAccumulator,
    private readonly fn: WindowFunction<Key, unknown, unknown>,
    private readonly policy: LatePolicy<unknown>,
  ) {
    this.maxTime = maxWindowTime(assigner); // also checks a hand-built assigner
    this.gap = assigner.gap;
    this.codec = acc.codec ?? defaultCodec();
  }

  open(ctx: OperatorContext<unknown>): void {
    this.ctx = ctx;
    this.late = new LateHandler(this.policy, ctx);
    this.lateness = this.late.allowedLateness;
    this.emitter = new TimedEmitter(ctx.output);
    const codec = this.codec;
    const table = ctx.state.registerTable(
      new KeyedTable<Session[]>(
        'sessions',
        {
          codec: {
            encode: (list) => list.flatMap((x) => [x.start, x.end, x.fired, codec.encode(x.acc)]),
            decode: (flat) => {
              const f = flat as unknown[];
              const list: Session[] = [];
              for (let i = 0; i < f.length; i += 4) {
                list.push({ start: f[i] as number, end: f[i + 1] as number, fired: f[i + 2] as boolean, acc: codec.decode(f[i + 3]), timer: NaN });
              }
              return list;
            },
          },
        },
        ctx.clock,
      ),
    );
    this.sessions = table.map as Map<Key, Session[]>;
    // Timers are derived: a restored session fires at its end, or is dropped after its lateness.
    for (const [k, list] of this.sessions) {
      list.sort((a, b) => a.start - b.start);
      for (const x of list) this.schedule(k, x, x.fired ? x.end - 1 + this.lateness : x.end - 1);
    }
  }

  processBatch(batch: Batch<unknown>, input: number): void {
    const { values, times, length } = batch;
    const { key: keyOf, add } = this.inputs[input]!;
    const gap = this.gap;
    const maxTime = this.maxTime;
    let i = 0;
    while (i < length) {
      try {
        for (; i < length; i++) {
          const v = values[i];
          const t = times[i]!;
          // Beyond maxTime, t + gap can round to t: a zero-length session.
          if (!(Math.abs(t) <= maxTime)) throw timeOutOfRange(t, this.assigner, maxTime);
          const k = checkKey(keyOf(v));
          const list = this.sessions.get(k);
          if (list !== undefined && list.length === 1) {
            // Fast path: the record falls inside the key's only session, which is still open.
            const s = list[0]!;
            if (!s.fired && s.start <= t && t < s.end) {
              // Fold first: a record that fails to fold must not change the session.
              s.acc = add(s.acc, v);
              if (t + gap > s.end) s.end = t + gap;
              continue;
            }
          }
          this.place(k, list, v, t, add);
        }
      } catch (error) {
        this.ctx.deadLetter(values[i], error, times[i]!);
        i++;
      }
    }
  }

  /** General case: create or merge sessions for a record at `t`. */
  private place(k: Key, list: Session[] | undefined, v: unknown, t: number, add: (acc: unknown, v: unknown) => unknown): void {
    const wm = this.ctx.watermark;
    let start = t;
    let end = t + this.gap;
    let first = -1;
    let last = -1;
    if (list !== undefined) {
      for (let j = 0; j < list.length; j++) {
        const s = list[j]!;
        if (s.start < t + this.gap && t < s.end) {
          if (first < 0) first = j;
          last = j;
          if (s.start < start) start = s.start;
          if (s.end > end) end = s.end;
        }
      }
    }
    if (end - 1 + this.lateness <= wm || (end - 1 <= wm && !this.late.updates)) {
      this.late.rejected(v, t);
      return;
    }
    let target: Session;
    if (first < 0) {
      target = { start: t, end: t + this.gap, acc: add(this.acc.create(), v), fired: false, timer: NaN };
      if (list === undefined) this.sessions.set(k, [target]);
      else {
        let at = 0;
        while (at < list.length && list[at]!.start < t) at++;
        list.splice(at, 0, target);
      }
    } else {
      const l = list!;
      target = l[first]!;
      // Everything that can fail (merge, add) runs before the sessions change, on a copy when
      // several sessions merge, so a dead-lettered record leaves them as they were.
      let acc = target.acc;
      if (last > first) {
        acc = this.acc.merge(this.acc.create(), acc);
        for (let j = first + 1; j <= last; j++) acc = this.acc.merge(acc, l[j]!.acc);
      }
      acc = add(acc, v);
      if (last > first) l.splice(first + 1, last - first);
      target.start = start;
      target.end = end;
      target.acc = acc;
    }
    if (end - 1 <= wm) {
      // A late record updated a session that already fired: emit the update now.
      this.late.updated();
      this.emit(k, target, true);
      target.fired = true;
      this.schedule(k, target, end - 1 + this.lateness);
    } else {
      if (target.fired) target.fired = false; // a fired session merged into one still open
      if (!(target.timer <= end - 1)) this.schedule(k, target, end - 1);
    }
  }

  private schedule(k: Key, s: Session, time: number): void {
    s.timer = time;
    this.timers.register(k, time);
  }

  private emit(key: Key, s: Session, late: boolean): void {
    const window: WindowInfo = { start: s.start, end: s.end, late };
    this.emitter.time = s.end - 1;
    // A session kept for late updates is changed later: emit a result of its own.
    const acc = this.late.updates ? this.acc.merge(this.acc.create(), s.acc) : s.acc;
    try {
      this.fn(key, this.acc.result(acc), window, this.emitter);
    } catch (error) {
      this.ctx.deadLetter({ key, window }, error, s.end - 1);
    }
  }

  onWatermark(watermark: number): void {
    this.timers.advance(watermark, this.onTimer);
  }

  /** The watermark at which the next session timer fires, or Infinity. */
  nextEventTime(): number {
    return this.timers.peek();
  }

  private timer(key: Key, time: number): void {
    const list = this.sessions.get(key);
    if (list === undefined) return;
    const wm = this.ctx.watermark;
    for (let j = 0; j < list.length; j++) {
      const s = list[j]!;
      if (s.timer !== time) continue;
      if (!s.fired) {
        if (s.end - 1 > wm) {
          this.schedule(key, s, s.end - 1); // the session grew since the timer was set
          continue;
        }
        this.emit(key, s, false);
        s.fired = true;
        if (this.lateness > 0) {
          this.schedule(key, s, s.end - 1 + this.lateness);
          continue;
        }
      } else if (s.end - 1 + this.lateness > wm) {
        this.schedule(key, s, s.end - 1 + this.lateness);
        continue;
      }
      list.splice(j, 1);
      j--;
    }
    if (list.length === 0) this.sessions.delete(key);
  }
}
