import type { Source, SourceOutput, SourceReader, SourceStatus, Split } from '../../runtime/source.ts';
import { convertCsvField, type CsvType, parseCsvRecord } from './csv.ts';
import type { FilePosition } from './jsonl-source.ts';
import { type BadLine, type LinePosition, LineReader, type LineReaderOptions } from './line-reader.ts';

/** A CSV row: column name → converted field. */
export type CsvRow = Record<string, string | number | boolean>;

/** Options of {@link CsvSource}. */
export interface CsvSourceOptions<T> extends LineReaderOptions {
  /** Field delimiter (default `,`). */
  readonly delimiter?: string;
  /**
   * Column names: `true` (default) reads them from the first row; an array gives them (no header
   * row); `false`: no header row, columns are named by position ("0", "1", ...).
   */
  readonly header?: boolean | readonly string[];
  /** Conversions per column (default: strings). A field that does not convert dead-letters its row. */
  readonly types?: Readonly<Record<string, CsvType>>;
  /** Turns a row into a record; throw to reject the row. Default: the row object. */
  readonly parse?: (row: CsvRow) => T;
}

function countQuotes(s: string): number {
  let n = 0;
  for (let i = s.indexOf('"'); i >= 0; i = s.indexOf('"', i + 1)) n++;
  return n;
}

interface CsvPosition extends FilePosition {
  readonly columns: readonly string[] | null;
}

/**
 * Reads a CSV file (RFC 4180, header row by default), bounded or tailing. Rows with the wrong
 * number of fields, bad quoting or fields that fail their type go to the dead-letter output with
 * the line number. Its position is the byte offset after the last complete row.
 *
 * @example
 * p.source(new CsvSource<Trade>('trades.csv', { types: { price: 'number', qty: 'integer' } }));
 */
export class CsvSource<T = CsvRow> implements Source<T>, SourceReader<T> {
  readonly bounded: boolean;
  readonly maxParallelism = 1;
  private readonly reader: LineReader;
  private readonly delimiter: string;
  private columns: readonly string[] | null;
  private start: FilePosition | undefined;
  private out: SourceOutput<T> | null = null;
  /** Lines of a record whose quoted field continues on the next line. */
  private partial: string[] | null = null;
  private partialQuotes = 0;
  private partialLine = 0;
  /** Reader position before the partial record: where a restore must start. */
  private partialStart: LinePosition = { offset: 0, line: 0 };
  /** Reader position before the line being handled. */
  private before: LinePosition = { offset: 0, line: 0 };

  constructor(
    readonly path: string,
    private readonly options: CsvSourceOptions<T> = {},
  ) {
    this.bounded = !options.tail;
    this.reader = new LineReader(path, options);
    this.delimiter = options.delimiter ?? ',';
    if (this.delimiter.length !== 1) throw new Error(`CSV delimiter must be one character, got '${this.delimiter}'`);
    this.columns = Array.isArray(options.header) ? options.header : null;
  }

  /** One split: the file, from its start. */
  splits(): Split<CsvPosition>[] {
    return [{ id: this.path, position: { offset: 0, line: 0, columns: this.columns } }];
  }

  createReader(): SourceReader<T> {
    return new CsvSource<T>(this.path, this.options);
  }

  async open(splits: readonly Split[]): Promise<void> {
    const saved = splits[0]?.position as CsvPosition | undefined;
    if (saved !== undefined) {
      const { columns, ...position } = saved;
      this.start = position;
      this.columns = columns;
    }
    try {
      await this.reader.open(this.start);
    } catch (error) {
      throw new Error(`cannot read ${this.path}: ${(error as Error).message}`, { cause: error });
    }
    this.before = this.reader.position();
  }

  private readonly onLine = (line: string, lineNo: number): void => {
    const before = this.before;
    this.before = this.reader.position();
    const out = this.out!;
    let text: string;
    let first: number;
    if (this.partial !== null) {
      // A quoted field is open: collect lines until the quotes balance, then parse once (a
      // record is complete exactly when it holds an even number of quotes).
      this.partial.push(line);
      this.partialQuotes += countQuotes(line);
      if (this.partialQuotes % 2 === 1) return;
      text = this.partial.join('\n');
      first = this.partialLine;
      this.partial = null;
    } else {
      if (line.length === 0) return;
      text = line;
      first = lineNo;
    }
    let fields: string[] | null;
    try {
      fields = parseCsvRecord(text, this.delimiter);
    } catch (error) {
      out.deadLetter({ file: this.path, line: first, text }, error);
      return;
    }
    if (fields === null) {
      this.partial = [text];
      this.partialQuotes = countQuotes(text);
      this.partialLine = first;
      // A snapshot taken now must resume at the start of this record.
      this.partialStart = before;
      return;
    }
    if (this.columns === null) {
      if (this.options.header !== false) {
        this.columns = fields;
        return;
      }
      // No header: columns are named by position, "0", "1", ...
      this.columns = fields.map((_, i) => String(i));
    }
    const columns = this.columns;
    if (fields.length !== columns.length) {
      out.deadLetter({ file: this.path, line: first, text }, new Error(`expected ${columns.length} fields, got ${fields.length}`));
      return;
    }
    try {
      const row: CsvRow = {};
      const types = this.options.types;
      for (let i = 0; i < columns.length; i++) {
        const name = columns[i]!;
        const type = types?.[name];
        row[name] = type === undefined ? fields[i]! : convertCsvField(name, fields[i]!, type);
      }
      out.emit(this.options.parse !== undefined ? this.options.parse(row) : (row as T), undefined, first);
    } catch (error) {
      out.deadLetter({ file: this.path, line: first, text }, error);
    }
  };

  private readonly onBad = (bad: BadLine): void => {
    this.before = this.reader.position();
    this.partial = null;
    this.out!.deadLetter({ file: this.path, line: bad.line, text: bad.preview }, new Error(bad.error));
  };

  poll(out: SourceOutput<T>, max: number): SourceStatus {
    this.out = out;
    const status = this.reader.next(max, this.onLine, this.onBad);
    if (status === 'end' && this.partial !== null) {
      out.deadLetter({ file: this.path, line: this.partialLine, text: this.partial.join('\n') }, new Error('unterminated quoted field at end of file'));
      this.partial = null;
    }
    return status;
  }

  ready(): Promise<void> {
    return this.reader.ready();
  }

  snapshot(): Split<CsvPosition>[] {
    return [{ id: this.path, position: { ...(this.partial !== null ? this.partialStart : this.reader.position()), columns: this.columns } }];
  }

  describe(line: number): Record<string, unknown> {
    return { file: this.path, line };
  }

  close(): Promise<void> {
    return this.reader.close();
  }
}
