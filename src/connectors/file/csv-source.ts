import type { Source, SourceOutput, SourceReader, SourceStatus, Split } from '../../runtime/source.ts';
import { convertCsvField, type CsvType, parseCsvRecord } from './csv.ts';
import type { FilePosition } from './jsonl-source.ts';
import { type BadLine, type LineCursor, LineReader, type LineReaderOptions } from './line-reader.ts';

/** A CSV row: column name → converted field. */
export type CsvRow = Record<string, string | number | boolean>;

/** Options of {@link CsvSource}. */
export interface CsvSourceOptions<T> extends LineReaderOptions {
  /** Field delimiter (default `,`). */
  readonly delimiter?: string;
  /**
   * Column names: `true` (default) reads them from the first row of the file (again after the
   * file is rotated); an array gives them (no header row); `false`: no header row, columns are
   * named by position ("0", "1", ...).
   */
  readonly header?: boolean | readonly string[];
  /** Conversions per column (default: strings). A field that does not convert dead-letters its row. */
  readonly types?: Readonly<Record<string, CsvType>>;
  /** Turns a row into a record; throw to reject the row. Default: the row object. */
  readonly parse?: (row: CsvRow) => T;
  /**
   * Longest record in bytes, the newlines of multi-line quoted fields included (default 1 MiB;
   * lines are limited to it too). A quoted field that is still open past it — almost always a
   * quote that was never closed — makes the record's first line a dead letter, and reading goes
   * on with the line after that one: the lines the open quote had taken in are read again as
   * records of their own. The same happens to a quoted field still open at the end of a bounded
   * file, and to a multi-line record whose quoting turns out to be malformed. Tailing, this also
   * bounds how long and how much a stray quote can hold back the rows after it.
   */
  readonly maxRecordBytes?: number;
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
 * the line number; an unterminated quoted field costs one line, not the rest of the file (see
 * {@link CsvSourceOptions.maxRecordBytes}). Its position is the byte offset before the first
 * line not yet turned into a row (or dead letter).
 *
 * @example
 * p.source(new CsvSource<Trade>('trades.csv', { types: { price: 'number', qty: 'integer' } }));
 */
export class CsvSource<T = CsvRow> implements Source<T>, SourceReader<T> {
  readonly bounded: boolean;
  readonly maxParallelism = 1;
  private readonly reader: LineReader;
  private readonly delimiter: string;
  private readonly maxRecordBytes: number;
  /** Column names come from a header row (`header` true or absent). */
  private readonly headerRow: boolean;
  private columns: readonly string[] | null;
  /** The next record is a header: the start of a file (or of its new content after rotation). */
  private headerPending = false;
  private start: FilePosition | undefined;
  private out: SourceOutput<T> | null = null;
  // A record whose quoted field continues on the next lines: its lines, the reader position after
  // each (to hand them back to the reader if the record is abandoned), and the position before
  // it (where a restore must start). `recordStart` is null when no record is open.
  private recordStart: LineCursor | null = null;
  private readonly recordLines: string[] = [];
  private readonly recordAfter: LineCursor[] = [];
  private recordQuotes = 0;
  private recordBytes = 0;
  /** Reader position before the line being handled. */
  private before: LineCursor;

  constructor(
    readonly path: string,
    private readonly options: CsvSourceOptions<T> = {},
  ) {
    const maxRecordBytes = options.maxRecordBytes ?? 1 << 20;
    if (!Number.isInteger(maxRecordBytes) || maxRecordBytes <= 0) {
      throw new Error(`maxRecordBytes must be a positive integer, got ${String(options.maxRecordBytes)}`);
    }
    this.maxRecordBytes = maxRecordBytes;
    this.bounded = !options.tail;
    this.reader = new LineReader(path, { ...options, maxLineBytes: Math.min(options.maxLineBytes ?? maxRecordBytes, maxRecordBytes) });
    this.before = this.reader.cursor();
    this.delimiter = options.delimiter ?? ',';
    if (this.delimiter.length !== 1) throw new Error(`CSV delimiter must be one character, got '${this.delimiter}'`);
    this.headerRow = options.header === undefined || options.header === true;
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
    await this.reader.open(this.start);
    this.before = this.reader.cursor();
    this.headerPending = this.headerRow && this.columns === null;
  }

  private readonly onLine = (line: string, lineNo: number): void => {
    const before = this.before;
    const after = this.reader.cursor();
    this.before = after;
    let text: string;
    let first: number;
    if (this.recordStart !== null) {
      if (lineNo === 1) {
        // Line 1 again: the file was rotated under the open record.
        this.abandon('unterminated quoted field: the file was rotated', line, null, after);
        return;
      }
      this.recordLines.push(line);
      this.recordAfter.push(after);
      this.recordBytes += Buffer.byteLength(line) + 1;
      // A record is complete exactly when it holds an even number of quotes: collect lines
      // until then, and parse once.
      this.recordQuotes += countQuotes(line);
      if (this.recordQuotes % 2 === 1) {
        if (this.recordBytes > this.maxRecordBytes) {
          this.abandon(`unterminated quoted field: record longer than maxRecordBytes (${this.maxRecordBytes} bytes)`, null, null, null);
        }
        return;
      }
      text = this.recordLines.join('\n');
      first = this.recordAfter[0]!.line;
    } else {
      if (lineNo === 1 && this.headerRow) this.headerPending = true;
      if (line.length === 0) return;
      text = line;
      first = lineNo;
    }
    const out = this.out!;
    let fields: string[] | null;
    try {
      fields = parseCsvRecord(text, this.delimiter);
    } catch (error) {
      // Quoting that breaks down after several lines most likely began with a stray quote on
      // the first: read the others again as records.
      if (this.recordStart !== null) {
        const last = this.recordAfter[this.recordAfter.length - 1]!.line;
        const why = error instanceof Error ? error.message : String(error);
        this.abandon(`${why} in the record of lines ${first}-${last}; lines ${first + 1}-${last} are read again as records`, null, null, null);
      } else out.deadLetter({ file: this.path, line: first, text }, error);
      return;
    }
    if (fields === null) {
      // A quoted field is open (an even quote count never leaves one open, so this is the
      // record's first line).
      this.recordStart = before;
      this.recordLines.push(line);
      this.recordAfter.push(after);
      this.recordQuotes = countQuotes(line);
      this.recordBytes = Buffer.byteLength(line) + 1;
      return;
    }
    if (this.recordStart !== null) this.closeRecord();
    if (this.headerPending) {
      this.headerPending = false;
      this.columns = fields;
      return;
    }
    if (this.columns === null) {
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
    const after = this.reader.cursor();
    if (this.recordStart !== null) {
      this.abandon(`unterminated quoted field: line ${bad.line} could not be read (${bad.error})`, null, bad, after);
      return;
    }
    this.before = after;
    this.out!.deadLetter({ file: this.path, line: bad.line, text: bad.preview }, new Error(bad.error));
  };

  private closeRecord(): void {
    this.recordStart = null;
    this.recordLines.length = 0;
    this.recordAfter.length = 0;
  }

  /**
   * Gives up on the open record: its first line is a dead letter, and the lines after it go back
   * to the reader, to be read again as records of their own — with the line being handled now
   * (`line` or `bad`, and the position after it) if it did not join the record. The position
   * moves to just after the first line.
   */
  private abandon(error: string, line: string | null, bad: BadLine | null, after: LineCursor | null): void {
    const firstText = this.recordLines[0]!;
    const firstAfter = this.recordAfter[0]!;
    const lines = this.recordLines.slice(1);
    const afters = this.recordAfter.slice(1);
    if (line !== null || bad !== null) {
      lines.push(line ?? '');
      afters.push(after!);
    }
    const bads: Array<BadLine | null> = lines.map(() => null);
    if (bad !== null) bads[bads.length - 1] = bad;
    this.closeRecord();
    this.before = firstAfter;
    this.reader.unread(lines, bads, afters, firstAfter);
    this.out!.deadLetter({ file: this.path, line: firstAfter.line, text: firstText }, new Error(error));
  }

  poll(out: SourceOutput<T>, max: number): SourceStatus {
    this.out = out;
    const status = this.reader.next(max, this.onLine, this.onBad);
    if (status === 'end' && this.recordStart !== null) {
      this.abandon('unterminated quoted field at end of file', null, null, null);
      return 'more';
    }
    return status;
  }

  ready(): Promise<void> {
    return this.reader.ready();
  }

  snapshot(): Split<CsvPosition>[] {
    // Inside an open record, a restore must read the whole record again.
    return [{ id: this.path, position: { ...this.reader.toPosition(this.recordStart ?? this.reader.cursor()), columns: this.columns } }];
  }

  describe(line: number): Record<string, unknown> {
    return { file: this.path, line };
  }

  close(): Promise<void> {
    return this.reader.close();
  }
}
