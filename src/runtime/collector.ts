import { Batch } from './batch.ts';
import type { Output } from './operator.ts';

/** The receiving end of an edge: a step instance and which of its inputs the edge feeds. */
export interface EdgeTarget {
  pushBatch(batch: Batch<unknown>, input: number): void;
  pushWatermark(watermark: number, input: number): void;
  pushIdle(idle: boolean, input: number): void;
  pushEnd(input: number): void;
}

/** One output port of a step instance, fanned out to every consumer. */
export class Collector<T> implements Output<T> {
  /** The buffer being filled; sources write it directly (internal). */
  readonly batch: Batch<T>;
  private readonly targets: EdgeTarget[] = [];
  private readonly inputs: number[] = [];
  /** Records handed downstream so far. */
  emitted = 0;

  constructor(capacity: number) {
    this.batch = new Batch<T>(capacity);
  }

  connect(target: EdgeTarget, input: number): void {
    this.targets.push(target);
    this.inputs.push(input);
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
    for (let i = 0; i < targets.length; i++) targets[i]!.pushBatch(b as Batch<unknown>, this.inputs[i]!);
    b.length = 0;
  }

  watermark(watermark: number): void {
    for (let i = 0; i < this.targets.length; i++) this.targets[i]!.pushWatermark(watermark, this.inputs[i]!);
  }

  idle(idle: boolean): void {
    for (let i = 0; i < this.targets.length; i++) this.targets[i]!.pushIdle(idle, this.inputs[i]!);
  }

  end(): void {
    for (let i = 0; i < this.targets.length; i++) this.targets[i]!.pushEnd(this.inputs[i]!);
  }
}
