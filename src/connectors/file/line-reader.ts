import { isUtf8 } from 'node:buffer';
import { type FileHandle, open } from 'node:fs/promises';
import { watch, type FSWatcher } from 'node:fs';

/** Options of {@link LineReader}. */
export interface LineReaderOptions {
  /** Keep reading as the file grows (like `tail -f`); otherwise end at end of file. */
  readonly tail?: boolean;
  /** How often a tailing reader checks for growth when no change event arrives (ms, default 100). */
  readonly pollInterval?: number;
  /** Longer lines are skipped and reported (default 16 MiB). */
  readonly maxLineBytes?: number;
}

const CHUNK = 1 << 20;
/** Lines read ahead of the pipeline. */
const MAX_QUEUED = 1 << 15;

/** A line that could not be read, with why. */
export interface BadLine {
  readonly line: number;
  readonly error: string;
  readonly preview: string;
}

/**
 * Reads a file line by line in the background (1 MiB reads), queueing decoded lines for
 * synchronous consumption. Tracks the byte offset and line number after every line, so a source
 * can snapshot its exact position. Lines end at `\n` (a trailing `\r` is removed); invalid UTF-8
 * and over-long lines are reported as bad lines instead of being decoded.
 *
 * In tail mode an unterminated last line waits for its newline, and a file that shrinks (was
 * truncated for rotation) is read again from the start.
 */
export class LineReader {
  private handle: FileHandle | null = null;
  /** Byte offset of the next byte to read from the file. */
  private readOffset = 0;
  /** Bytes of an incomplete line carried over between reads. */
  private carry: Buffer = Buffer.alloc(0);
  private skippingLongLine = false;
  private readonly lines: string[] = [];
  /** Byte offset just past each queued line. */
  private readonly ends: number[] = [];
  private readonly bad: Array<BadLine | null> = [];
  private head = 0;
  private lineNo = 0;
  /** Position (offset, line number) after the last line handed out. */
  private consumedOffset = 0;
  private consumedLine = 0;
  private eof = false;
  private error: unknown = null;
  private reading: Promise<void> | null = null;
  private waiters: Array<() => void> = [];
  private watcher: FSWatcher | null = null;
  private pollTimer: NodeJS.Timeout | null = null;
  private closed = false;
  private readonly maxLineBytes: number;

  constructor(
    readonly path: string,
    private readonly options: LineReaderOptions = {},
  ) {
    this.maxLineBytes = options.maxLineBytes ?? 16 << 20;
  }

  /** Opens the file at a position from {@link position} (default: the start). */
  async open(position: { offset: number; line: number } = { offset: 0, line: 0 }): Promise<void> {
    this.handle = await open(this.path, 'r');
    this.readOffset = position.offset;
    this.consumedOffset = position.offset;
    this.lineNo = position.line;
    this.consumedLine = position.line;
    if (this.options.tail) {
      try {
        this.watcher = watch(this.path, () => this.fill());
        this.watcher.on('error', () => undefined);
      } catch {
        // Some file systems cannot watch; the poll timer below still notices growth.
      }
      this.pollTimer = setInterval(() => this.fill(), this.options.pollInterval ?? 100);
      this.pollTimer.unref();
    }
    this.fill();
  }

  /** The position after the last line handed out: resume from here. */
  position(): { offset: number; line: number } {
    return { offset: this.consumedOffset, line: this.consumedLine };
  }

  /**
   * Hands out up to `max` queued lines, synchronously. Returns `more` if lines may be available
   * right away, `wait` if none are queued yet, `end` when a bounded file is exhausted.
   */
  next(max: number, onLine: (line: string, lineNo: number) => void, onBad: (bad: BadLine) => void): 'more' | 'wait' | 'end' {
    if (this.error !== null) throw this.error;
    let n = 0;
    while (n < max && this.head < this.lines.length) {
      const i = this.head++;
      this.consumedOffset = this.ends[i]!;
      this.consumedLine++;
      const bad = this.bad[i];
      if (bad !== null && bad !== undefined) onBad(bad);
      else onLine(this.lines[i]!, this.consumedLine);
      n++;
    }
    if (this.head === this.lines.length && this.head > 0) {
      this.lines.length = 0;
      this.ends.length = 0;
      this.bad.length = 0;
      this.head = 0;
    }
    this.fill();
    if (this.head < this.lines.length) return 'more';
    if (this.eof && !this.options.tail && this.reading === null) return 'end';
    return 'wait';
  }

  /** Resolves when lines are queued, the file ended, or reading failed. */
  ready(): Promise<void> {
    if (this.head < this.lines.length || this.error !== null || (this.eof && !this.options.tail)) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  async close(): Promise<void> {
    this.closed = true;
    this.watcher?.close();
    if (this.pollTimer !== null) clearInterval(this.pollTimer);
    await this.reading?.catch(() => undefined);
    await this.handle?.close();
    this.handle = null;
    this.wake();
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const resolve of w) resolve();
  }

  /** Starts a background read if there is room in the queue and none is running. */
  private fill(): void {
    if (this.reading !== null || this.closed || this.handle === null) return;
    if (this.lines.length - this.head >= MAX_QUEUED) return;
    if (this.eof && !this.options.tail) return;
    this.reading = this.readChunk().then(
      () => {
        this.reading = null;
        this.wake();
        // Keep reading ahead while there is data and room.
        if (!this.eof) this.fill();
      },
      (error: unknown) => {
        this.reading = null;
        this.error = error;
        this.wake();
      },
    );
  }

  private async readChunk(): Promise<void> {
    const handle = this.handle!;
    if (this.options.tail) {
      const { size } = await handle.stat();
      if (size < this.readOffset) {
        // Truncated (rotated by copy-truncate): start over.
        this.readOffset = 0;
        this.carry = Buffer.alloc(0);
        this.consumedOffset = 0;
      }
    }
    const buf = Buffer.allocUnsafe(CHUNK);
    const { bytesRead } = await handle.read(buf, 0, CHUNK, this.readOffset);
    if (bytesRead === 0) {
      this.eof = true;
      if (!this.options.tail && this.carry.length > 0) {
        // A bounded file's last line needs no newline.
        this.pushLine(this.carry, 0, this.carry.length, this.readOffset, false);
        this.carry = Buffer.alloc(0);
      }
      return;
    }
    this.eof = false;
    const base = this.readOffset - this.carry.length;
    this.readOffset += bytesRead;
    const data = this.carry.length > 0 ? Buffer.concat([this.carry, buf.subarray(0, bytesRead)]) : buf.subarray(0, bytesRead);
    // Validate the complete lines of the chunk at once; only a chunk that fails is checked line
    // by line, to find the bad lines.
    const lastNl = data.lastIndexOf(10);
    const valid = lastNl >= 0 && isUtf8(data.subarray(0, lastNl + 1));
    let start = 0;
    for (;;) {
      const nl = data.indexOf(10, start);
      if (nl < 0) break;
      if (this.skippingLongLine) {
        this.skippingLongLine = false;
        this.advanceOnly(base + nl + 1);
      } else this.pushLine(data, start, nl, base + nl + 1, valid);
      start = nl + 1;
    }
    const rest = data.length - start;
    if (this.skippingLongLine) {
      this.carry = Buffer.alloc(0);
    } else if (rest > this.maxLineBytes) {
      this.lineNo++;
      this.queue('', base + data.length, {
        line: this.lineNo,
        error: `line longer than ${this.maxLineBytes} bytes`,
        preview: data.toString('utf8', start, start + 120),
      });
      this.skippingLongLine = true;
      this.carry = Buffer.alloc(0);
    } else {
      this.carry = Buffer.from(data.subarray(start));
    }
  }

  /** Accounts for skipped bytes (the rest of an over-long line) without producing a line. */
  private advanceOnly(end: number): void {
    if (this.lines.length > this.head) this.ends[this.ends.length - 1] = end;
    else this.consumedOffset = end;
  }

  private pushLine(data: Buffer, start: number, end: number, endOffset: number, validUtf8: boolean): void {
    this.lineNo++;
    let stop = end;
    if (stop > start && data[stop - 1] === 13) stop--;
    if (stop - start > this.maxLineBytes) {
      this.queue('', endOffset, { line: this.lineNo, error: `line longer than ${this.maxLineBytes} bytes`, preview: data.toString('utf8', start, start + 120) });
      return;
    }
    if (!validUtf8 && !isUtf8(data.subarray(start, stop))) {
      this.queue('', endOffset, { line: this.lineNo, error: 'invalid UTF-8', preview: data.toString('latin1', start, Math.min(stop, start + 120)) });
      return;
    }
    this.queue(data.toString('utf8', start, stop), endOffset, null);
  }

  private queue(line: string, endOffset: number, bad: BadLine | null): void {
    this.lines.push(line);
    this.ends.push(endOffset);
    this.bad.push(bad);
  }
}
