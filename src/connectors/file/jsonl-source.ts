import type { Source, SourceOutput, SourceReader, SourceStatus, Split } from '../../runtime/source.ts';
import { type BadLine, LineReader, type LineReaderOptions, type LinePosition } from './line-reader.ts';

/** Options of {@link JsonlSource}. */
export interface JsonlSourceOptions<T> extends LineReaderOptions {
  /**
   * Turns a parsed JSON value into a record, throwing for values that do not fit (wrong types,
   * missing or unknown fields): those lines become dead letters. Default: the value as it is.
   */
  readonly parse?: (value: unknown) => T;
}

/** The position of a file source: byte offset and line number after the last line read. */
export type FilePosition = LinePosition;

/**
 * Reads a JSON-lines file: one JSON value per line, blank lines skipped. Bounded by default; with
 * `tail: true` it follows the file as it grows. Malformed lines, invalid UTF-8 and over-long lines
 * go to the dead-letter output with the file, line number and error. Its position is the byte
 * offset after the last line read, so a restored job resumes exactly there.
 *
 * @example
 * p.source(new JsonlSource<Reading>('readings.jsonl', { tail: true }), { timestamp: (r) => r.time });
 */
export class JsonlSource<T> implements Source<T>, SourceReader<T> {
  readonly bounded: boolean;
  readonly maxParallelism = 1;
  private readonly reader: LineReader;
  private start: FilePosition | undefined;
  private out: SourceOutput<T> | null = null;
  private readonly parse: ((value: unknown) => T) | undefined;

  constructor(
    readonly path: string,
    private readonly options: JsonlSourceOptions<T> = {},
  ) {
    this.bounded = !options.tail;
    this.reader = new LineReader(path, options);
    this.parse = options.parse;
  }

  /** One split: the file, from its start. */
  splits(): Split<FilePosition>[] {
    return [{ id: this.path, position: { offset: 0, line: 0 } }];
  }

  createReader(): SourceReader<T> {
    return new JsonlSource<T>(this.path, this.options);
  }

  async open(splits: readonly Split[]): Promise<void> {
    this.start = splits[0]?.position as FilePosition | undefined;
    await this.reader.open(this.start);
  }

  private readonly onLine = (line: string, lineNo: number): void => {
    if (line.length === 0 || line.trim().length === 0) return;
    const out = this.out!;
    let value: unknown;
    try {
      value = JSON.parse(line);
      if (this.parse !== undefined) value = this.parse(value);
    } catch (error) {
      out.deadLetter({ file: this.path, line: lineNo, text: line.length > 1000 ? line.slice(0, 1000) : line }, error);
      return;
    }
    out.emit(value as T, undefined, lineNo);
  };

  private readonly onBad = (bad: BadLine): void => {
    this.out!.deadLetter({ file: this.path, line: bad.line, text: bad.preview }, new Error(bad.error));
  };

  poll(out: SourceOutput<T>, max: number): SourceStatus {
    this.out = out;
    return this.reader.next(max, this.onLine, this.onBad);
  }

  ready(): Promise<void> {
    return this.reader.ready();
  }

  snapshot(): Split<FilePosition>[] {
    return [{ id: this.path, position: this.reader.position() }];
  }

  describe(line: number): Record<string, unknown> {
    return { file: this.path, line };
  }

  close(): Promise<void> {
    return this.reader.close();
  }
}
