import type { SourceStepOptions } from '../plan/graph.ts';
import { MAIN_PORT } from '../plan/graph.ts';
import type { Clock } from '../time/clock.ts';
import { BoundedOutOfOrderness, DEFAULT_IDLE_TIMEOUT, MAX_WATERMARK, MIN_WATERMARK } from '../time/watermark.ts';
import type { Batch } from './batch.ts';
import { Collector } from './collector.ts';
import type { DeadLetterChannel } from './dead-letters.ts';
import { newMetrics } from './operator-node.ts';
import type { Source, SourceOutput, SourceStatus } from './source.ts';

/**
 * The runtime around one source instance: it assigns timestamps, derives watermarks (bounded
 * out-of-orderness, unless the source emits its own), detects idleness, and at the end of a
 * bounded input sends the final watermark and end-of-input downstream.
 */
export class SourceNode implements SourceOutput<unknown> {
  readonly output: Collector<unknown>;
  readonly ports: Map<string, Collector<unknown>>;
  readonly metrics = newMetrics();
  currentWatermark = MIN_WATERMARK;
  idle = false;
  ended = false;
  /** Set while the source waits for `ready()`. */
  waiting: Promise<void> | null = null;
  private readonly timestamp: ((value: unknown) => number) | undefined;
  private readonly generator: BoundedOutOfOrderness | null;
  private readonly idleTimeout: number;
  private lastActivity: number;
  private readonly batch: Batch<unknown>;

  constructor(
    readonly stepId: string,
    readonly source: Source<unknown>,
    options: SourceStepOptions<unknown>,
    readonly clock: Clock,
    batchSize: number,
    private readonly deadLetters: DeadLetterChannel,
  ) {
    this.output = new Collector<unknown>(batchSize);
    this.ports = new Map([[MAIN_PORT, this.output]]);
    this.timestamp = options.timestamp;
    this.generator = source.watermarks === 'explicit' ? null : new BoundedOutOfOrderness(options.outOfOrderness ?? 0);
    this.idleTimeout = options.idleTimeout ?? DEFAULT_IDLE_TIMEOUT;
    this.lastActivity = clock.now();
    // The collector's batch is written directly: emit() is on the hot path of every source.
    this.batch = this.output.batch;
  }

  emit(value: unknown, time?: number): void {
    const b = this.batch;
    const n = b.length;
    b.values[n] = value;
    b.times[n] = time === undefined ? NaN : time;
    b.length = n + 1;
    if (n + 1 === b.capacity) this.publish();
  }

  watermark(watermark: number): void {
    this.publish();
    if (watermark > this.currentWatermark) {
      // A source whose watermark moves is making progress even without records: not idle.
      this.lastActivity = this.clock.now();
      if (!this.ended) this.setIdle(false);
    }
    // Record times are truncated to whole ms, so a fractional watermark W only closes the
    // milliseconds before floor(W): a record at floor(W) + 0.5 > W may still come.
    this.advance(Number.isInteger(watermark) ? watermark : Math.floor(watermark) - 1);
  }

  deadLetter(raw: unknown, error: unknown): void {
    this.metrics.deadLetters++;
    this.deadLetters.report(this.stepId, raw, error, NaN);
  }

  markIdle(): void {
    this.publish();
    if (!this.ended) this.setIdle(true);
  }

  /** Tells consumers when the source turns idle or active. */
  private setIdle(idle: boolean): void {
    if (this.idle === idle) return;
    this.idle = idle;
    this.output.idle(idle);
  }

  /** Polls the source once and publishes what it emitted. */
  poll(max: number): SourceStatus {
    const status = this.source.poll(this, max);
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

  /** Sends the final watermark and end-of-input (bounded input exhausted). */
  finish(): void {
    if (this.ended) return;
    this.publish();
    this.ended = true;
    this.setIdle(false);
    this.advance(MAX_WATERMARK);
    this.output.end();
  }

  /** Stamps, counts and hands downstream the records emitted since the last call. */
  publish(): void {
    const b = this.batch;
    const n = b.length;
    if (n === 0) {
      if (this.generator !== null) this.advance(this.generator.current());
      return;
    }
    const now = this.clock.now();
    this.stamp(now);
    const kept = b.length;
    if (kept > 0) {
      this.metrics.recordsIn += kept;
      this.metrics.recordsOut += kept;
      this.lastActivity = now;
      this.setIdle(false);
      this.generator?.observe(b.times, kept);
      this.output.flush();
    }
    if (this.generator !== null) this.advance(this.generator.current());
  }

  private stamp(now: number): void {
    const b = this.batch;
    const values = b.values;
    const times = b.times;
    const n = b.length;
    const fn = this.timestamp;
    if (fn === undefined) {
      // NaN means the source gave no time: ingestion time. Event times are whole milliseconds
      // (windows fire at end - 1): fractions are dropped. An infinite time is a dead letter.
      // The common case — whole-ms times — is one check per record and no writes.
      let i = 0;
      while (i < n && times[i]! % 1 === 0) i++;
      if (i === n) return;
      let w = i;
      for (; i < n; i++) {
        let t = times[i]!;
        if (t !== t) t = now;
        else if (t % 1 !== 0) {
          if (t === Infinity || t === -Infinity) {
            this.deadLetter(values[i], new Error(`the source gave time ${t}, not a finite number`));
            continue;
          }
          t = Math.floor(t);
        }
        values[w] = values[i];
        times[w] = t;
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
        this.deadLetter(v, e);
        continue;
      }
      if (typeof t !== 'number' || !Number.isFinite(t)) {
        this.deadLetter(v, new Error(`timestamp function returned ${String(t)}, not a finite number`));
        continue;
      }
      values[w] = v;
      times[w] = Math.floor(t);
      w++;
    }
    b.length = w;
  }

  private advance(watermark: number): void {
    if (watermark > this.currentWatermark) {
      this.currentWatermark = watermark;
      this.output.watermark(watermark);
    }
  }
}
