import type { Source, SourceOutput, SourceStatus } from '../../runtime/source.ts';
import { convertCsvField, type CsvType, parseCsvRecord } from './csv.ts';
import type { FilePosition } from './jsonl-source.ts';
import { type BadLine, LineReader, type LineReaderOptions } from './line-reader.ts';

/** A CSV row: column name → converted field. */
export type CsvRow = Record<string, string | number | boolean>;

/** Options of {@link CsvSource}. */
export interface CsvSourceOptions<T> extends LineReaderOptions {
  /** Field delimiter (default `,`). */
  readonly delimiter?: string;
  /** Column names: `true` (default) reads them from the first row; an array gives them (no header row). */
  readonly header?: boolean | readonly string[];
  /** Conversions per column (default: strings). A field that does not convert dead-letters its row. */
  readonly types?: Readonly<Record<string, CsvType>>;
  /** Turns a row into a record; throw to reject the row. Default: the row object. */
  readonly parse?: (row: CsvRow) => T;
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
export class CsvSource<T = CsvRow> implements Source<T> {
  readonly bounded: boolean;
  private readonly reader: LineReader;
  private readonly delimiter: string;
  private columns: readonly string[] | null;
  private start: FilePosition | undefined;
  private out: SourceOutput<T> | null = null;
  /** Text of a record whose quoted field continues on the next line. */
  private partial: string | null = null;
  private partialLine = 0;

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

  async open(): Promise<void> {
    await this.reader.open(this.start);
  }

  private readonly onLine = (line: string, lineNo: number): void => {
    const out = this.out!;
    let text = line;
    let first = lineNo;
    if (this.partial !== null) {
      text = this.partial + '\n' + line;
      first = this.partialLine;
      this.partial = null;
    } else if (line.length === 0) return;
    let fields: string[] | null;
    try {
      fields = parseCsvRecord(text, this.delimiter);
    } catch (error) {
      out.deadLetter({ file: this.path, line: first, text }, error);
      return;
    }
    if (fields === null) {
      this.partial = text;
      this.partialLine = first;
      return;
    }
    if (this.columns === null) {
      this.columns = fields;
      return;
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
      out.emit(this.options.parse !== undefined ? this.options.parse(row) : (row as T));
    } catch (error) {
      out.deadLetter({ file: this.path, line: first, text }, error);
    }
  };

  private readonly onBad = (bad: BadLine): void => {
    this.partial = null;
    this.out!.deadLetter({ file: this.path, line: bad.line, text: bad.preview }, new Error(bad.error));
  };

  poll(out: SourceOutput<T>, max: number): SourceStatus {
    this.out = out;
    const status = this.reader.next(max, this.onLine, this.onBad);
    if (status === 'end' && this.partial !== null) {
      out.deadLetter({ file: this.path, line: this.partialLine, text: this.partial }, new Error('unterminated quoted field at end of file'));
      this.partial = null;
    }
    return status;
  }

  ready(): Promise<void> {
    return this.reader.ready();
  }

  snapshot(): CsvPosition {
    return { ...this.reader.position(), columns: this.columns };
  }

  restore(state: unknown): void {
    const s = state as CsvPosition;
    this.start = { offset: s.offset, line: s.line };
    this.columns = s.columns;
  }

  close(): Promise<void> {
    return this.reader.close();
  }
}
