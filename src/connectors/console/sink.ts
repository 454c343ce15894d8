import type { Batch } from '../../runtime/batch.ts';
import type { Sink, SinkContext } from '../../runtime/sink.ts';

/** Options of {@link ConsoleSink}. */
export interface ConsoleSinkOptions<T> {
  /** Text before each line (default: the step id and `> `). */
  readonly prefix?: string;
  /** How a record is printed (default: JSON). */
  readonly format?: (value: T) => string;
  /** Where lines go (default: stdout). */
  readonly write?: (text: string) => void;
}

/** Prints each record as a line of JSON (or your format), one write per batch. */
export class ConsoleSink<T> implements Sink<T> {
  private prefix = '';

  constructor(private readonly options: ConsoleSinkOptions<T> = {}) {}

  open(ctx: SinkContext): void {
    this.prefix = this.options.prefix ?? `${ctx.stepId}> `;
  }

  write(batch: Batch<T>): void {
    const format = this.options.format ?? ((v: T) => JSON.stringify(v));
    let text = '';
    for (let i = 0; i < batch.length; i++) text += this.prefix + format(batch.values[i] as T) + '\n';
    if (text.length === 0) return;
    if (this.options.write !== undefined) this.options.write(text);
    else process.stdout.write(text);
  }
}
