import { DEAD_LETTER_PORT, MAIN_PORT, type SourceStepOptions } from '../plan/graph.ts';
import { DEFAULT_IDLE_TIMEOUT, MAX_WATERMARK, MIN_WATERMARK } from '../time/watermark.ts';
import type { Barrier } from './barrier.ts';
import type { Batch } from './batch.ts';
import { Collector } from './collector.ts';
import type { InstanceRestore, RuntimeEnv, SavedSplit } from './env.ts';
import { newMetrics, type NodeIdentity, reportDeadLetter } from './operator-node.ts';
import type { Source, SourceOutput, SourceReader, SourceStatus, Split, SplitOutput } from './source.ts';

/** The largest event time a source accepts: beyond it, milliseconds are no longer exact. */
export const MAX_EVENT_TIME = Number.MAX_SAFE_INTEGER;

/** Watermark state of one split output (or of the reader's own output). */
class SplitTrack implements SplitOutput<unknown> {
  /** Highest event time emitted on this split. */
  maxTime = MIN_WATERMARK;
  /** Explicit watermark (sources that emit their own). */
  explicit = MIN_WATERMARK;
  idle = false;
  finished = false;
  /** Whether the reader emitted on it (or gave it a watermark) in this run. */
  used = false;

  constructor(
    private readonly node: SourceNode,
    readonly id: string,
  ) {}

  emit(value: unknown, time?: number, origin?: number): void {
    this.node.emitOn(this, value, time, origin);
  }

  watermark(watermark: number): void {
    this.node.explicitWatermark(this, watermark);
  }

  deadLetter(raw: unknown, error: unknown): void {
    this.node.deadLetter(raw, error);
  }

  markIdle(): void {
    this.node.markIdle(this);
  }

  split(id: string): SplitOutput<unknown> {
    return this.node.split(id);
  }

  finish(): void {
    this.node.finishSplit(this);
  }
}

/**
 * The runtime around one source reader. It assigns timestamps (the step's `timestamp` function,
 * else the time the source gives, else ingestion time), derives the watermark per split (bounded
 * out-of-orderness) and takes the minimum over splits, detects idleness by timeout, injects
 * checkpoint barriers between polls — after publishing what was emitted and recording every
 * split's position — and at the end of bounded input sends the final watermark and end-of-input.
 *
 * Lateness does not depend on batch boundaries: a record that is behind the watermark its split
 * had reached when the record came (the highest time seen before it, minus the bound) is
 * delivered after that watermark, so a window judges it late whatever the batch size.
 */
export class SourceNode {
  readonly output: Collector<unknown>;
  readonly ports: Map<string, Collector<unknown>>;
  readonly metrics = newMetrics();
  /** The watermark sent downstream. */
  currentWatermark = MIN_WATERMARK;
  idle = false;
  ended = false;
  /** After a stopping barrier the source reads nothing more. */
  stopped = false;
  /** Set while the reader waits for `ready()`. */
  waiting: Promise<void> | null = null;
  readonly stepId: string;
  readonly instance: number;
  readonly parallelism: number;
  /** How long the last checkpoint snapshot held processing up (ms). */
  lastSnapshotPause = 0;
  /** Time spent unable to read because downstream could not take more (ms). */
  backpressureMs = 0;
  private readonly timestamp: ((value: unknown) => number) | undefined;
  private readonly derived: boolean;
  private readonly bound: number;
  private readonly maxSkew: number;
  private readonly idleTimeout: number;
  private lastActivity: number;
  private readonly batch: Batch<unknown>;
  private readonly tracks = new Map<string, SplitTrack>();
  /** Highest event times of restored splits, seeding their tracks when the reader uses them. */
  private readonly savedMax = new Map<string, number>();
  /** The reader's own output (records emitted without a split). */
  private readonly own: SplitTrack;
  /** The split whose records are in the batch. */
  private current: SplitTrack;
  /** Origins (line numbers, offsets) of the batched records, if the reader gives them. */
  private origins: number[] | null = null;
  private readonly deadLetterPort: Collector<unknown>;

  constructor(
    id: NodeIdentity,
    readonly source: Source<unknown>,
    readonly reader: SourceReader<unknown>,
    /** This instance's splits, with their positions. */
    readonly splits: readonly Split[],
    options: SourceStepOptions<unknown>,
    private readonly env: RuntimeEnv,
    restore: InstanceRestore | null,
  ) {
    this.stepId = id.stepId;
    this.instance = id.instance;
    this.parallelism = id.parallelism;
    this.output = new Collector<unknown>(env.batchSize);
    this.deadLetterPort = new Collector<unknown>(env.batchSize);
    this.ports = new Map([
      [MAIN_PORT, this.output],
      [DEAD_LETTER_PORT, this.deadLetterPort],
    ]);
    this.timestamp = options.timestamp;
    this.derived = source.watermarks !== 'explicit';
    this.bound = options.outOfOrderness ?? 0;
    this.maxSkew = options.maxTimeSkew ?? Infinity;
    this.idleTimeout = options.idleTimeout ?? source.idleTimeout ?? DEFAULT_IDLE_TIMEOUT;
    this.lastActivity = env.clock.now();
    // The collector's batch is written directly: emit() is on the hot path of every source.
    this.batch = this.output.batch;
    this.own = new SplitTrack(this, '');
    this.current = this.own;
    if (restore !== null) {
      this.currentWatermark = restore.watermark;
      let ownMax = Infinity;
      for (const s of restore.splits ?? []) ownMax = Math.min(ownMax, s.maxTime);
      this.own.maxTime = ownMax === Infinity ? MIN_WATERMARK : ownMax;
      for (const s of restore.splits ?? []) {
        this.savedMax.set(s.id, s.maxTime);
        // A split that had its own output holds the watermark back from the first poll, as it
        // did before the checkpoint — not only once the reader emits on it again (readers poll
        // one split at a time: the first one polled would set the watermark alone).
        if (s.tracked === true) {
          const t = new SplitTrack(this, s.id);
          t.maxTime = s.maxTime;
          t.explicit = s.explicit ?? MIN_WATERMARK;
          t.finished = s.finished === true;
          this.tracks.set(s.id, t);
        }
      }
    }
  }

  // --- SourceOutput (the reader's own output) ---------------------------------------------

  /** The output handed to the reader's `poll`. */
  get out(): SourceOutput<unknown> {
    return this.own;
  }

  emit(value: unknown, time?: number): void {
    this.emitOn(this.own, value, time, undefined);
  }

  /** Emits a record of split `track` into the batch. */
  emitOn(track: SplitTrack, value: unknown, time: number | undefined, origin: number | undefined): void {
    if (track !== this.current) {
      track.used = true;
      // A batch holds records of one split, so that its watermark is derived per split.
      if (this.batch.length > 0) this.publish();
      this.current = track;
    }
    const b = this.batch;
    const n = b.length;
    b.values[n] = value;
    b.times[n] = time === undefined ? NaN : time;
    if (origin !== undefined) (this.origins ??= [])[n] = origin;
    else if (this.origins !== null) this.origins[n] = NaN;
    b.length = n + 1;
    if (n + 1 === b.capacity) this.publish();
  }

  split(id: string): SplitOutput<unknown> {
    let t = this.tracks.get(id);
    if (t === undefined) {
      t = new SplitTrack(this, id);
      const saved = this.savedMax.get(id);
      if (saved !== undefined) t.maxTime = saved;
      this.tracks.set(id, t);
    }
    return t;
  }

  finishSplit(track: SplitTrack): void {
    if (track === this.current) this.publish();
    track.finished = true;
    this.advance(this.combined());
  }

  /** An explicit watermark from the reader (or from the test harness). */
  explicitWatermark(track: SplitTrack, given: number): void {
    this.publish();
    track.used = true;
    // Record times are truncated to whole ms, so a fractional watermark W only closes the
    // milliseconds before floor(W): a record at floor(W) + 0.5 > W may still come.
    const watermark = Number.isInteger(given) || !Number.isFinite(given) ? given : Math.floor(given) - 1;
    if (watermark > track.explicit) {
      track.explicit = watermark;
      // A source whose watermark moves is making progress even without records: not idle.
      this.lastActivity = this.env.clock.now();
      track.idle = false;
      if (!this.ended) this.setIdle(false);
    }
    this.advance(this.combined());
  }

  watermark(watermark: number): void {
    this.explicitWatermark(this.own, watermark);
  }

  deadLetter(raw: unknown, error: unknown, time = NaN): void {
    this.metrics.deadLetters++;
    reportDeadLetter(this.env, this.stepId, this.deadLetterPort, raw, error, time);
  }

  markIdle(track: SplitTrack = this.own): void {
    this.publish();
    track.idle = true;
    let allIdle = true;
    for (const t of this.activeTracks()) if (!t.idle) allIdle = false;
    if (allIdle && !this.ended) this.setIdle(true);
    else this.advance(this.combined());
  }

  // --- driven by the executor ----------------------------------------------------------------

  /** Polls the reader once and publishes what it emitted. */
  poll(max: number): SourceStatus {
    const status = this.reader.poll(this.own, max);
    this.publish();
    if (status === 'end') this.finish();
    return status;
  }

  /** Marks the source idle if it has been silent for the idle timeout. */
  checkIdle(now: number): void {
    if (this.idle || this.ended || this.idleTimeout <= 0) return;
    if (now - this.lastActivity >= this.idleTimeout) this.setIdle(true);
  }

  /** When this source would turn idle if it stays silent (for the executor's sleep). */
  idleDeadline(): number {
    if (this.idle || this.ended || this.idleTimeout <= 0) return Infinity;
    return this.lastActivity + this.idleTimeout;
  }

  /**
   * Injects checkpoint barrier `barrier` between two polls: publishes what was emitted, records
   * the position of every split, and sends the barrier on every port.
   */
  injectBarrier(barrier: Barrier): void {
    const started = performance.now();
    this.publish();
    this.flushDeadLetters();
    const splits: SavedSplit[] = this.reader.snapshot(barrier.id).map((s) => {
      const track = this.tracks.get(s.id);
      if (track === undefined) return { id: s.id, position: s.position, maxTime: this.own.maxTime };
      return {
        id: s.id,
        position: s.position,
        maxTime: track.maxTime,
        tracked: true,
        ...(track.finished ? { finished: true } : {}),
        ...(track.explicit > MIN_WATERMARK ? { explicit: track.explicit } : {}),
      };
    });
    this.lastSnapshotPause = performance.now() - started;
    this.env.snapshots.add(barrier.id, this.stepId, this.instance, { watermark: this.currentWatermark, splits }, this.lastSnapshotPause);
    for (const port of this.ports.values()) port.barrier(barrier);
    if (barrier.stop) this.stopped = true;
  }

  /**
   * Recovery: sends the restored watermark downstream again, before any input, so that a step
   * with several inputs gets back what each input had reached (its channels start from scratch).
   */
  announceWatermark(): void {
    if (this.currentWatermark === MIN_WATERMARK) return;
    for (const port of this.ports.values()) port.watermark(this.currentWatermark);
  }

  /** Sends the final watermark and end-of-input (bounded input exhausted). */
  finish(): void {
    if (this.ended) return;
    this.publish();
    this.ended = true;
    this.setIdle(false);
    this.advance(MAX_WATERMARK);
    for (const port of this.ports.values()) port.end();
  }

  /** Stamps, counts and hands downstream the records emitted since the last call. */
  publish(): void {
    const b = this.batch;
    if (b.length === 0) {
      this.flushDeadLetters();
      if (this.derived) this.advance(this.combined());
      return;
    }
    const now = this.env.clock.now();
    this.stamp(now);
    if (b.length > 0) {
      this.lastActivity = now;
      this.setIdle(false);
      this.current.idle = false;
      this.current.used = true;
      if (this.derived) this.observe();
      else this.hand();
    }
    this.origins = null;
    this.flushDeadLetters();
    if (this.derived) this.advance(this.combined());
  }

  /**
   * Raises the split's highest time over the batch. A record at or behind the watermark that the
   * records before it allow (and that is ahead of the watermark sent so far) is a point where the
   * watermark must move first: the records before it go out, then that watermark, then the rest.
   */
  private observe(): void {
    const b = this.batch;
    const times = b.times;
    const track = this.current;
    const lag = this.bound + 1;
    let max = track.maxTime;
    for (let i = 0; i < b.length; i++) {
      const t = times[i]!;
      if (t > max) {
        max = t;
        continue;
      }
      if (t <= max - lag) {
        track.maxTime = max;
        const w = this.combined();
        if (t <= w && w > this.currentWatermark) {
          this.cut(i);
          this.advance(w);
          i = -1; // the batch now holds the rest, from its start
        }
      }
    }
    track.maxTime = max;
    this.hand();
  }

  /** Sends records [0, i) downstream and keeps [i, length) in the batch. */
  private cut(i: number): void {
    const b = this.batch;
    const n = b.length;
    const restValues = b.values.slice(i, n);
    const restTimes = b.times.slice(i, n);
    b.length = i;
    this.hand();
    for (let j = 0; j < restValues.length; j++) b.push(restValues[j], restTimes[j]!);
  }

  /** Counts and flushes the batch. */
  private hand(): void {
    const n = this.batch.length;
    if (n === 0) return;
    this.metrics.recordsIn += n;
    this.metrics.recordsOut += n;
    this.output.flush();
  }

  private flushDeadLetters(): void {
    this.deadLetterPort.flush();
  }

  /** Splits that hold the watermark: in use, not finished. */
  private *activeTracks(): Iterable<SplitTrack> {
    if (this.own.used || this.tracks.size === 0) yield this.own;
    for (const t of this.tracks.values()) if (!t.finished) yield t;
  }

  /** Every split in use, with its watermark (for the dashboard: which split holds time back). */
  splitStates(): Array<{ id: string; watermark: number; idle: boolean; finished: boolean }> {
    const out: Array<{ id: string; watermark: number; idle: boolean; finished: boolean }> = [];
    const add = (t: SplitTrack): void => {
      out.push({ id: t.id, watermark: this.derived ? t.maxTime - this.bound - 1 : t.explicit, idle: t.idle, finished: t.finished });
    };
    if (this.own.used) add(this.own);
    for (const t of this.tracks.values()) add(t);
    return out;
  }

  /** The watermark over the splits: the minimum over active, non-idle ones. */
  private combined(): number {
    let min = Infinity;
    let any = false;
    for (const t of this.activeTracks()) {
      if (t.idle) continue;
      any = true;
      const w = this.derived ? t.maxTime - this.bound - 1 : t.explicit;
      if (w < min) min = w;
    }
    return any ? min : this.currentWatermark;
  }

  private stamp(now: number): void {
    const b = this.batch;
    const values = b.values;
    const times = b.times;
    const n = b.length;
    const fn = this.timestamp;
    const skewLimit = this.currentWatermark + this.maxSkew;
    if (fn === undefined) {
      // NaN means the source gave no time: ingestion time. Event times are whole milliseconds
      // (windows fire at end - 1): fractions are dropped. The common case — whole-ms times in
      // range — is two checks per record and no writes.
      let i = 0;
      while (i < n) {
        const t = times[i]!;
        if (t % 1 !== 0 || t > skewLimit || t > MAX_EVENT_TIME || t < -MAX_EVENT_TIME) break;
        i++;
      }
      if (i === n) return;
      let w = i;
      for (; i < n; i++) {
        let t = times[i]!;
        if (t !== t) t = now;
        else if (t % 1 !== 0) {
          if (t === Infinity || t === -Infinity) {
            this.rejectTime(i, new Error(`the source gave time ${t}, not a finite number`));
            continue;
          }
          t = Math.floor(t);
        }
        if (!this.timeAccepted(i, t, skewLimit)) continue;
        values[w] = values[i];
        times[w] = t;
        if (this.origins !== null) this.origins[w] = this.origins[i]!;
        w++;
      }
      b.length = w;
      return;
    }
    // User timestamp function: a throw or a non-finite result makes the record a dead letter.
    let w = 0;
    for (let i = 0; i < n; i++) {
      const v = values[i];
      let t: number;
      try {
        t = fn(v);
      } catch (e) {
        this.rejectTime(i, e);
        continue;
      }
      if (typeof t !== 'number' || !Number.isFinite(t)) {
        this.rejectTime(i, new Error(`timestamp function returned ${String(t)}, not a finite number`));
        continue;
      }
      t = Math.floor(t);
      if (!this.timeAccepted(i, t, skewLimit)) continue;
      values[w] = v;
      times[w] = t;
      if (this.origins !== null) this.origins[w] = this.origins[i]!;
      w++;
    }
    b.length = w;
  }

  /** Whether a record's time is in range and within the skew allowed ahead of the watermark. */
  private timeAccepted(i: number, t: number, skewLimit: number): boolean {
    if (t > MAX_EVENT_TIME || t < -MAX_EVENT_TIME) {
      this.rejectTime(i, new Error(`event time ${t} is out of range (beyond ±2^53 ms, milliseconds are inexact): a timestamp in micro- or nanoseconds?`), t);
      return false;
    }
    if (t > skewLimit) {
      this.rejectTime(
        i,
        new Error(`event time ${t} is ${t - this.currentWatermark} ms ahead of the watermark ${this.currentWatermark}, beyond maxTimeSkew ${this.maxSkew} ms`),
        t,
      );
      return false;
    }
    return true;
  }

  /** A record whose time is unusable becomes a dead letter, with where it came from. */
  private rejectTime(i: number, error: unknown, time = NaN): void {
    const value = this.batch.values[i];
    const origin = this.origins?.[i];
    const describe = this.reader.describe;
    const record = origin !== undefined && origin === origin && describe !== undefined ? { ...describe.call(this.reader, origin), record: value } : value;
    this.deadLetter(record, error, time);
  }

  private setIdle(idle: boolean): void {
    if (this.idle === idle) return;
    this.idle = idle;
    for (const port of this.ports.values()) port.idle(idle);
  }

  private advance(watermark: number): void {
    if (watermark > this.currentWatermark) {
      this.currentWatermark = watermark;
      for (const port of this.ports.values()) port.watermark(watermark);
    }
  }
}
