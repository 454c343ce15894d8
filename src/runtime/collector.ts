import { Batch } from './batch.ts';
import type { Barrier } from './barrier.ts';
import type { Output } from './operator.ts';

/**
 * The receiving end of an edge: a step instance, and which of its input channels the edge feeds.
 * Everything on one channel arrives in order: batches, watermarks, idleness, barriers, end.
 */
export interface EdgeTarget {
  pushBatch(batch: Batch<unknown>, channel: number): void;
  pushWatermark(watermark: number, channel: number): void;
  pushIdle(idle: boolean, channel: number): void;
  pushBarrier(barrier: Barrier, channel: number): void;
  pushEnd(channel: number): void;
}

/** One output port of a step instance, fanned out to every consumer. */
export class Collector<T> implements Output<T> {
  /** The buffer being filled; sources write it directly (internal). */
  readonly batch: Batch<T>;
  private readonly targets: EdgeTarget[] = [];
  private readonly channels: number[] = [];
  /** Records handed downstream so far. */
  emitted = 0;

  constructor(capacity: number) {
    this.batch = new Batch<T>(capacity);
  }

  connect(target: EdgeTarget, channel: number): void {
    this.targets.push(target);
    this.channels.push(channel);
  }

  /** The consumers of this port (for the executor's analysis of what feeds what). */
  targetsList(): readonly EdgeTarget[] {
    return this.targets;
  }

  /** Whether anything consumes this port. */
  get connected(): boolean {
    return this.targets.length > 0;
  }

  emit(value: T, time: number): void {
    const b = this.batch;
    const n = b.length;
    b.values[n] = value;
    b.times[n] = time;
    b.length = n + 1;
    if (n + 1 === b.capacity) this.flush();
  }

  /** Hands the buffered records to every consumer. */
  flush(): void {
    const b = this.batch;
    if (b.length === 0) return;
    this.emitted += b.length;
    const targets = this.targets;
    for (let i = 0; i < targets.length; i++) targets[i]!.pushBatch(b as Batch<unknown>, this.channels[i]!);
    b.length = 0;
  }

  watermark(watermark: number): void {
    for (let i = 0; i < this.targets.length; i++) this.targets[i]!.pushWatermark(watermark, this.channels[i]!);
  }

  idle(idle: boolean): void {
    for (let i = 0; i < this.targets.length; i++) this.targets[i]!.pushIdle(idle, this.channels[i]!);
  }

  barrier(barrier: Barrier): void {
    this.flush();
    for (let i = 0; i < this.targets.length; i++) this.targets[i]!.pushBarrier(barrier, this.channels[i]!);
  }

  end(): void {
    this.flush();
    for (let i = 0; i < this.targets.length; i++) this.targets[i]!.pushEnd(this.channels[i]!);
  }
}
