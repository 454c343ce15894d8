import type { Batch } from '../../runtime/batch.ts';
import type { Sink, SinkContext } from '../../runtime/sink.ts';
import { formatLines } from '../lines.ts';

/** Options of {@link ConsoleSink}. */
export interface ConsoleSinkOptions<T> {
  /** Text before each line (default: the step id and `> `). */
  readonly prefix?: string;
  /** How a record is printed (default: JSON). */
  readonly format?: (value: T) => string;
  /** Where lines go (default: stdout). */
  readonly write?: (text: string) => void;
}

/**
 * Prints each record as a line of JSON (or your format), one write per batch. A record that
 * cannot be printed is a dead letter of the sink.
 *
 * @example
 * results.sink(new ConsoleSink({ prefix: 'q5> ' }));
 */
export class ConsoleSink<T> implements Sink<T> {
  private prefix = '';
  private ctx!: SinkContext;

  constructor(private readonly options: ConsoleSinkOptions<T> = {}) {}

  open(ctx: SinkContext): void {
    this.ctx = ctx;
    this.prefix = this.options.prefix ?? `${ctx.stepId}> `;
  }

  write(batch: Batch<T>): void {
    const text = formatLines(batch, this.options.format ?? JSON.stringify, this.ctx, this.prefix);
    if (text.length === 0) return;
    if (this.options.write !== undefined) this.options.write(text);
    else process.stdout.write(text);
  }
}
