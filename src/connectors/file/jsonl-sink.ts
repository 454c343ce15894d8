import { closeSync, fsyncSync, openSync, writeSync } from 'node:fs';
import type { Batch } from '../../runtime/batch.ts';
import type { Sink } from '../../runtime/sink.ts';

/** Options of {@link JsonlSink}. */
export interface JsonlSinkOptions<T> {
  /** Append to an existing file instead of replacing it. */
  readonly append?: boolean;
  /** How a record becomes a line (default: `JSON.stringify`). */
  readonly format?: (value: T) => string;
}

/**
 * Writes each record as a line of JSON. Writes are synchronous, one per batch, so a slow disk
 * slows the job instead of growing a buffer; `flush` (end of input) syncs the file to disk.
 *
 * @example
 * results.sink(new JsonlSink('out/q5.jsonl'));
 */
export class JsonlSink<T> implements Sink<T> {
  private fd: number | null = null;

  constructor(
    readonly path: string,
    private readonly options: JsonlSinkOptions<T> = {},
  ) {}

  open(): void {
    this.fd = openSync(this.path, this.options.append ? 'a' : 'w');
  }

  write(batch: Batch<T>): void {
    const format = this.options.format ?? JSON.stringify;
    let text = '';
    for (let i = 0; i < batch.length; i++) text += format(batch.values[i] as T) + '\n';
    if (text.length > 0) writeSync(this.fd!, text);
  }

  flush(): void {
    if (this.fd !== null) fsyncSync(this.fd);
  }

  close(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }
}
