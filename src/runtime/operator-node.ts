import type { OutputTag } from '../api/output-tag.ts';
import { MAIN_PORT } from '../plan/graph.ts';
import type { Clock } from '../time/clock.ts';
import { MAX_WATERMARK, MIN_WATERMARK } from '../time/watermark.ts';
import type { Batch } from './batch.ts';
import { Collector, type EdgeTarget } from './collector.ts';
import type { DeadLetterChannel } from './dead-letters.ts';
import type { Operator, OperatorContext, OperatorMetrics, Output } from './operator.ts';

/** Counters of a fresh step. */
export function newMetrics(): OperatorMetrics {
  return { recordsIn: 0, recordsOut: 0, deadLetters: 0, lateRecords: 0, lateDropped: 0, duplicatesDropped: 0, keysBeyondMemoryBound: 0 };
}

/**
 * The runtime around one operator instance: it tracks the watermark, idleness and end of each
 * input, combines them (the watermark is the minimum over inputs that are neither idle nor
 * ended), calls the operator, and flushes its outputs after every call so that records always
 * precede the watermark that follows them.
 */
export class OperatorNode implements EdgeTarget, OperatorContext<unknown> {
  readonly output: Collector<unknown>;
  readonly metrics = newMetrics();
  /** Output ports by id (main and side outputs). */
  readonly ports = new Map<string, Collector<unknown>>();
  /** The combined input watermark the operator has seen. */
  watermark = MIN_WATERMARK;
  idle = false;
  ended = false;
  /** Earliest processing time the operator asked to be called at. */
  nextProcessingTime = Infinity;
  private readonly inputWatermarks: number[];
  private readonly inputIdle: boolean[];
  private readonly inputEnded: boolean[];
  private readonly portList: Collector<unknown>[] = [];

  constructor(
    readonly stepId: string,
    readonly operator: Operator<unknown, unknown>,
    readonly inputCount: number,
    readonly clock: Clock,
    readonly maxParallelism: number,
    private readonly batchSize: number,
    private readonly deadLetters: DeadLetterChannel,
  ) {
    this.output = this.port(MAIN_PORT);
    this.inputWatermarks = new Array<number>(inputCount).fill(MIN_WATERMARK);
    this.inputIdle = new Array<boolean>(inputCount).fill(false);
    this.inputEnded = new Array<boolean>(inputCount).fill(false);
  }

  /** The collector of port `id`, created on first use. */
  port(id: string): Collector<unknown> {
    let c = this.ports.get(id);
    if (c === undefined) {
      c = new Collector<unknown>(this.batchSize);
      this.ports.set(id, c);
      this.portList.push(c);
    }
    return c;
  }

  sideOutput<X>(tag: OutputTag<X>): Output<X> {
    return this.port(tag.id) as Collector<X>;
  }

  deadLetter(record: unknown, error: unknown, time: number): void {
    this.metrics.deadLetters++;
    this.deadLetters.report(this.stepId, record, error, time);
  }

  requestProcessingTime(time: number): void {
    if (time < this.nextProcessingTime) this.nextProcessingTime = time;
  }

  open(): void {
    this.operator.open(this);
  }

  pushBatch(batch: Batch<unknown>, input: number): void {
    this.metrics.recordsIn += batch.length;
    this.operator.processBatch(batch, input);
    this.flush();
  }

  pushWatermark(watermark: number, input: number): void {
    if (watermark <= this.inputWatermarks[input]!) return;
    this.inputWatermarks[input] = watermark;
    this.combine();
  }

  pushIdle(idle: boolean, input: number): void {
    if (this.inputIdle[input] === idle) return;
    this.inputIdle[input] = idle;
    this.combine();
  }

  pushEnd(input: number): void {
    if (this.inputEnded[input]) return;
    this.inputEnded[input] = true;
    this.combine();
    if (this.inputEnded.every(Boolean)) {
      this.operator.endInput?.();
      this.flush();
      this.ended = true;
      for (const port of this.portList) port.end();
    }
  }

  /** Calls the operator back if the clock reached the time it asked for. */
  firePendingProcessingTime(now: number): void {
    if (now < this.nextProcessingTime || this.ended) return;
    this.nextProcessingTime = Infinity;
    this.operator.onProcessingTime?.(now);
    this.flush();
  }

  /** Hands every port's buffered records downstream and counts them. */
  flush(): void {
    const ports = this.portList;
    let out = 0;
    for (let i = 0; i < ports.length; i++) {
      const port = ports[i]!;
      port.flush();
      out += port.emitted;
    }
    this.metrics.recordsOut = out;
  }

  private setIdle(idle: boolean): void {
    if (this.idle === idle) return;
    this.idle = idle;
    for (const port of this.portList) port.idle(idle);
  }

  private combine(): void {
    let min = Infinity;
    let open = 0;
    let active = 0;
    for (let i = 0; i < this.inputCount; i++) {
      if (this.inputEnded[i]) continue;
      open++;
      if (this.inputIdle[i]) continue;
      active++;
      const w = this.inputWatermarks[i]!;
      if (w < min) min = w;
    }
    if (open === 0) min = MAX_WATERMARK;
    else if (active === 0) {
      // Every open input is idle: this step is idle too and holds nobody back downstream.
      this.setIdle(true);
      return;
    }
    this.setIdle(false);
    if (min > this.watermark) {
      this.watermark = min;
      this.operator.onWatermark?.(min);
      this.flush();
      for (const port of this.portList) port.watermark(min);
    }
  }
}
