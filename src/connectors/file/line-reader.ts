import { isUtf8 } from 'node:buffer';
import { type FileHandle, open, stat } from 'node:fs/promises';
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

/**
 * Where a reader is in its file: the byte offset and line number after the last line handed out,
 * and whether it is in the middle of skipping an over-long line (whose rest must not be read as
 * a line of its own).
 */
export interface LinePosition {
  readonly offset: number;
  readonly line: number;
  readonly skipping?: boolean;
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
 * synchronous consumption. Every queued line carries the position after it, so a source can
 * snapshot its exact position. Lines end at `\n` (a trailing `\r` is removed; a UTF-8 byte-order
 * mark at the start of the file is skipped); invalid UTF-8 and over-long lines are reported as
 * bad lines instead of being decoded.
 *
 * In tail mode an unterminated last line waits for its newline; a file that shrinks (rotated by
 * copy-truncate) is read again from the start, and when the path names a new file (rotated by
 * rename and create) the reader finishes the old one and goes on with the new one.
 */
export class LineReader {
  private handle: FileHandle | null = null;
  /** One read buffer for the reader's life: decoded lines and carried bytes are copies. */
  private readonly buffer = Buffer.allocUnsafe(CHUNK);
  /** Byte offset of the next byte to read from the file. */
  private readOffset = 0;
  /** Bytes of an incomplete line carried over between reads. */
  private carry: Buffer = Buffer.alloc(0);
  /** Reading the rest of an over-long line, already reported, up to its newline. */
  private skippingLongLine = false;
  private lineNo = 0;
  // The queue: parallel arrays, consumed from `head`.
  private readonly lines: string[] = [];
  private readonly bad: Array<BadLine | null> = [];
  /** Position after each queued line. */
  private readonly after: LinePosition[] = [];
  private head = 0;
  private consumed: LinePosition = { offset: 0, line: 0 };
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
  async open(position: LinePosition = { offset: 0, line: 0 }): Promise<void> {
    this.handle = await open(this.path, 'r');
    this.readOffset = position.offset;
    this.lineNo = position.line;
    this.skippingLongLine = position.skipping ?? false;
    this.consumed = { offset: position.offset, line: position.line, skipping: this.skippingLongLine };
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
  position(): LinePosition {
    return this.consumed;
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
      this.consumed = this.after[i]!;
      const bad = this.bad[i];
      if (bad !== null && bad !== undefined) onBad(bad);
      else onLine(this.lines[i]!, this.consumed.line);
      n++;
    }
    this.compact();
    this.fill();
    if (this.head < this.lines.length) return 'more';
    if (this.eof && !this.options.tail && this.reading === null) return 'end';
    return 'wait';
  }

  /** Releases handed-out lines: the queue stays bounded by the read-ahead, not the file. */
  private compact(): void {
    const head = this.head;
    if (head === 0 || (head < 4096 && head < this.lines.length)) return;
    if (head === this.lines.length) {
      this.lines.length = 0;
      this.bad.length = 0;
      this.after.length = 0;
    } else if (head * 2 >= this.lines.length) {
      this.lines.splice(0, head);
      this.bad.splice(0, head);
      this.after.splice(0, head);
    } else return;
    this.head = 0;
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
      const { size, ino } = await handle.stat();
      if (size < this.readOffset) this.restarted();
      else if (size === this.readOffset) {
        // At the end of the file we hold: if the path now names another file (rotated by
        // rename, then created anew), go on with that one from its start.
        const current = await stat(this.path).catch(() => null);
        if (current !== null && current.ino !== ino) {
          // The old file may have grown between our two looks: finish it before switching.
          if ((await handle.stat()).size > this.readOffset) return this.readChunk();
          await handle.close();
          this.handle = await open(this.path, 'r');
          this.restarted();
          return this.readChunk();
        }
        this.eof = true;
        return;
      }
    }
    const buf = this.buffer;
    const { bytesRead } = await handle.read(buf, 0, CHUNK, this.readOffset);
    if (bytesRead === 0) {
      this.eof = true;
      if (!this.options.tail && this.carry.length > 0) {
        // A bounded file's last line needs no newline.
        this.pushLine(this.carry, 0, this.carry.length, this.readOffset, false);
        this.carry = Buffer.alloc(0);
      } else if (!this.options.tail && this.skippingLongLine) {
        this.skippingLongLine = false;
        this.advanceOnly(this.readOffset);
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
    let start = base === 0 && data.length >= 3 && data[0] === 0xef && data[1] === 0xbb && data[2] === 0xbf ? 3 : 0;
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
      // Report it now, then skip up to its newline; the position says so, so a restore keeps
      // skipping rather than read the rest of the line as a line.
      this.lineNo++;
      this.skippingLongLine = true;
      this.queue(
        '',
        { offset: base + data.length, line: this.lineNo, skipping: true },
        { line: this.lineNo, error: `line longer than ${this.maxLineBytes} bytes`, preview: data.toString('utf8', start, start + 120) },
      );
      this.carry = Buffer.alloc(0);
    } else {
      this.carry = Buffer.from(data.subarray(start));
    }
  }

  /**
   * The file was rotated: truncated in place (copy-truncate) or replaced by a new file. The new
   * content starts at byte 0.
   */
  private restarted(): void {
    this.readOffset = 0;
    this.carry = Buffer.alloc(0);
    this.skippingLongLine = false;
    this.lineNo = 0;
    // Lines of the old file still queued are handed out, but a position taken after them
    // points at the start of the new content.
    const start: LinePosition = { offset: 0, line: 0 };
    for (let i = this.head; i < this.after.length; i++) this.after[i] = start;
    this.consumed = start;
  }

  /** Accounts for skipped bytes (the rest of an over-long line) without producing a line. */
  private advanceOnly(end: number): void {
    const done: LinePosition = { offset: end, line: this.lineNo };
    if (this.lines.length > this.head) this.after[this.after.length - 1] = done;
    else this.consumed = done;
  }

  private pushLine(data: Buffer, start: number, end: number, endOffset: number, validUtf8: boolean): void {
    this.lineNo++;
    const after: LinePosition = { offset: endOffset, line: this.lineNo };
    let stop = end;
    if (stop > start && data[stop - 1] === 13) stop--;
    if (stop - start > this.maxLineBytes) {
      this.queue('', after, { line: this.lineNo, error: `line longer than ${this.maxLineBytes} bytes`, preview: data.toString('utf8', start, start + 120) });
      return;
    }
    if (!validUtf8 && !isUtf8(data.subarray(start, stop))) {
      this.queue('', after, { line: this.lineNo, error: 'invalid UTF-8', preview: data.toString('latin1', start, Math.min(stop, start + 120)) });
      return;
    }
    this.queue(data.toString('utf8', start, stop), after, null);
  }

  private queue(line: string, after: LinePosition, bad: BadLine | null): void {
    this.lines.push(line);
    this.after.push(after);
    this.bad.push(bad);
  }
}
