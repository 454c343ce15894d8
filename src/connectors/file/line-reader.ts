import { isUtf8 } from 'node:buffer';
import { type FileHandle, open, stat } from 'node:fs/promises';
import { type Stats, watch, type FSWatcher } from 'node:fs';
import { basename, dirname } from 'node:path';

/** Options of {@link LineReader}. */
export interface LineReaderOptions {
  /** Keep reading as the file grows (like `tail -f`); otherwise end at end of file. */
  readonly tail?: boolean;
  /**
   * How often a tailing reader looks at the file when no change notification arrives (ms).
   * Notifications (`fs.watch` on the file's directory) make new lines arrive at once; the poll
   * is the fallback for file systems that do not deliver them (network mounts, some
   * containers). Default 1000 while notifications are set up, 100 where they cannot be.
   */
  readonly pollInterval?: number;
  /** Longer lines are skipped and reported (default 16 MiB). */
  readonly maxLineBytes?: number;
}

/**
 * Where a reader is in its file: the byte offset and line number after the last line handed out,
 * whether it is in the middle of skipping an over-long line (whose rest must not be read as a line
 * of its own), and which file that is. A plain object (msgpack-encodable).
 *
 * The file is named by its inode and a fingerprint (FNV-1a) of its first bytes: a restore goes
 * on from `offset` only in the same file, and reads the file at the path from its start when it
 * was rotated meanwhile — by copy-truncate (same inode, new first bytes, even when it has grown
 * past `offset` again) or by rename (another inode; a complete 1 KiB fingerprint that still
 * matches is trusted over the inode, so that a copied file resumes). Positions without these
 * fields (older snapshots) are trusted as they are.
 */
export interface LinePosition {
  readonly offset: number;
  readonly line: number;
  readonly skipping?: boolean;
  readonly ino?: number;
  readonly fingerprint?: number;
  readonly fingerprintBytes?: number;
}

/** The file a cursor belongs to. Immutable: replaced as the fingerprint grows or the file rotates. */
interface FileIdentity {
  readonly ino: number;
  /** FNV-1a of the first `fingerprintBytes` bytes (at most {@link FINGERPRINT_BYTES}). */
  readonly fingerprint: number;
  readonly fingerprintBytes: number;
}

/**
 * A position of the reader, one per queued line (internal to the file sources; snapshots hold
 * the flat {@link LinePosition} made by {@link LineReader.toPosition}).
 */
export interface LineCursor {
  readonly offset: number;
  readonly line: number;
  readonly skipping?: boolean;
  readonly file: FileIdentity;
}

const CHUNK = 1 << 20;
/** Lines read ahead of the pipeline. */
const MAX_QUEUED = 1 << 15;
/** How much of the start of a file identifies it. */
const FINGERPRINT_BYTES = 1024;
const FNV_OFFSET = 0x811c9dc5;

function fnv1a(hash: number, buf: Uint8Array, start: number, end: number): number {
  let h = hash;
  for (let i = start; i < end; i++) h = Math.imul(h ^ buf[i]!, 0x01000193);
  return h >>> 0;
}

/** A line that could not be read, with why. */
export interface BadLine {
  readonly line: number;
  readonly error: string;
  readonly preview: string;
}

/** Queue entry that is no line: the file rotated here, and the position moves to the new one. */
const ROTATED: BadLine = { line: 0, error: 'rotated', preview: '' };

/** An error about a file that names it. */
class FileError extends Error {
  declare code?: string;
}

/**
 * An error about the file that names it: `cannot open '/data/in.csv': no such file or directory
 * (ENOENT)` rather than Node's `ENOENT: no such file or directory, open '/data/in.csv'` (and
 * `EISDIR: illegal operation on a directory, read`, which names no file at all). Keeps `code`
 * and the original error as `cause`.
 */
function fileError(action: string, path: string, error: unknown): FileError {
  if (error instanceof FileError) return error;
  const e = error as NodeJS.ErrnoException | null;
  const code = typeof e?.code === 'string' ? e.code : undefined;
  let reason = error instanceof Error ? error.message : String(error);
  if (code !== undefined) reason = `${reason.replace(/^[A-Z0-9_]+: /, '').replace(/, [a-z]+( '.*')?$/, '')} (${code})`;
  const out = new FileError(`${action} '${path}': ${reason}`, { cause: error });
  if (code !== undefined) out.code = code;
  return out;
}

function checkOption(name: string, value: number | undefined, integer: boolean): void {
  if (value === undefined) return;
  if (!(value > 0) || !Number.isFinite(value) || (integer && !Number.isInteger(value))) {
    throw new Error(`${name} must be a positive ${integer ? 'integer' : 'number'}, got ${String(value)}`);
  }
}

/**
 * Reads a file line by line in the background (1 MiB reads), queueing decoded lines for
 * synchronous consumption. Every queued line carries the position after it, so a source can
 * snapshot its exact position. Lines end at `\n` (a trailing `\r` is removed; a UTF-8 byte-order
 * mark at the start of the file is skipped); invalid UTF-8 and over-long lines are reported as
 * bad lines instead of being decoded.
 *
 * In tail mode an unterminated last line waits for its newline, and the reader sleeps until the
 * file changes: it is woken by a change notification (or the poll fallback), never by its own
 * empty reads, so an idle file costs no CPU. A file whose content was replaced — shrunk, or with
 * other first bytes (copy-truncate, also when it regrew past the old size before the reader
 * looked) — is read again from the start, and when the path names a new file (rotated by rename
 * and create) the reader finishes the old one and goes on with the new one.
 */
export class LineReader {
  private handle: FileHandle | null = null;
  /** One read buffer for the reader's life: decoded lines and carried bytes are copies. */
  private readonly buffer = Buffer.allocUnsafe(CHUNK);
  private readonly head1k = Buffer.allocUnsafe(FINGERPRINT_BYTES);
  /** Byte offset of the next byte to read from the file. */
  private readOffset = 0;
  /** Bytes of an incomplete line carried over between reads. */
  private carry: Buffer = Buffer.alloc(0);
  /** Reading the rest of an over-long line, already reported, up to its newline. */
  private skippingLongLine = false;
  private lineNo = 0;
  /** The file being read; its fingerprint covers at least min(readOffset, FINGERPRINT_BYTES) bytes. */
  private file: FileIdentity = { ino: 0, fingerprint: FNV_OFFSET, fingerprintBytes: 0 };
  /** Modification time at the last look: an unchanged size with a new mtime may be new content. */
  private mtimeMs = 0;
  // The queue: parallel arrays, consumed from `head`.
  private readonly lines: string[] = [];
  private readonly bad: Array<BadLine | null> = [];
  /** Position after each queued line. */
  private readonly after: LineCursor[] = [];
  private head = 0;
  private consumed: LineCursor = { offset: 0, line: 0, file: this.file };
  /** At the end of the file at the last look. A tailing reader looks again when told of a change. */
  private eof = false;
  /** The file changed (a notification or the poll timer) since the last look began. */
  private changed = false;
  private error: unknown = null;
  private reading: Promise<void> | null = null;
  private waiters: Array<() => void> = [];
  private watcher: FSWatcher | null = null;
  private pollTimer: NodeJS.Timeout | null = null;
  private closed = false;
  private readonly maxLineBytes: number;
  /** How often the reader looked at the file (a stat, and a read if it grew): for tests and diagnostics. */
  looks = 0;
  private readonly onChange = (): void => {
    this.changed = true;
    this.fill();
  };

  constructor(
    readonly path: string,
    private readonly options: LineReaderOptions = {},
  ) {
    checkOption('maxLineBytes', options.maxLineBytes, true);
    checkOption('pollInterval', options.pollInterval, false);
    this.maxLineBytes = options.maxLineBytes ?? 16 << 20;
  }

  /**
   * Opens the file at a position from {@link position} (default: the start); a position in a
   * file that has since been rotated starts at the beginning of the file now at the path. Fails
   * with an error naming the file when it cannot be opened.
   */
  async open(position?: LinePosition): Promise<void> {
    let handle: FileHandle;
    try {
      handle = await open(this.path, 'r');
    } catch (error) {
      throw fileError('cannot open', this.path, error);
    }
    let start: LinePosition;
    try {
      const st = await handle.stat();
      if (st.isDirectory()) throw new FileError(`cannot read '${this.path}': it is a directory`);
      start = await this.resume(handle, st, position);
      this.mtimeMs = st.mtimeMs;
    } catch (error) {
      await handle.close();
      throw fileError('cannot read', this.path, error);
    }
    this.handle = handle;
    this.readOffset = start.offset;
    this.lineNo = start.line;
    this.skippingLongLine = start.skipping ?? false;
    this.consumed = this.skippingLongLine
      ? { offset: start.offset, line: start.line, skipping: true, file: this.file }
      : { offset: start.offset, line: start.line, file: this.file };
    if (this.options.tail) this.watch();
    this.fill();
  }

  /**
   * Where to start in the file just opened: `position` if it belongs to this file, else its
   * beginning. Sets the file's identity, with a fingerprint covering the bytes before the start.
   */
  private async resume(handle: FileHandle, st: Stats, position: LinePosition | undefined): Promise<LinePosition> {
    const fresh = { offset: 0, line: 0 };
    this.file = { ino: st.ino, fingerprint: FNV_OFFSET, fingerprintBytes: 0 };
    if (position === undefined || (position.offset === 0 && position.skipping !== true)) return fresh;
    if (st.size < position.offset) return fresh;
    const known = position.fingerprintBytes ?? 0;
    const want = Math.min(FINGERPRINT_BYTES, Math.max(position.offset, known));
    const { bytesRead } = await handle.read(this.head1k, 0, want, 0);
    if (position.fingerprint !== undefined) {
      if (bytesRead < known || fnv1a(FNV_OFFSET, this.head1k, 0, known) !== position.fingerprint) return fresh;
      if (position.ino !== undefined && position.ino !== st.ino && known < FINGERPRINT_BYTES) return fresh;
    }
    this.file = { ino: st.ino, fingerprint: fnv1a(FNV_OFFSET, this.head1k, 0, bytesRead), fingerprintBytes: bytesRead };
    return position;
  }

  /** Change notification on the file's directory (so that a file created by rotation is seen too), and a poll. */
  private watch(): void {
    const name = basename(this.path);
    const onEvent = (_event: string, file: string | null): void => {
      if (file === null || file === name) this.onChange();
    };
    for (const target of [dirname(this.path), this.path]) {
      try {
        this.watcher = watch(target, onEvent);
        this.watcher.on('error', () => {
          // Notifications stopped (the directory went away, say): poll at the fallback rate.
          this.watcher?.close();
          this.watcher = null;
          this.startPolling(this.options.pollInterval ?? 100);
        });
        break;
      } catch {
        // Not watchable here (permissions, file system): try the file itself, else only poll.
      }
    }
    this.startPolling(this.options.pollInterval ?? (this.watcher !== null ? 1000 : 100));
  }

  private startPolling(ms: number): void {
    if (this.pollTimer !== null) clearInterval(this.pollTimer);
    if (this.closed) return;
    this.pollTimer = setInterval(this.onChange, ms);
    this.pollTimer.unref();
  }

  /** The position after the last line handed out: resume from here. */
  position(): LinePosition {
    return this.toPosition(this.consumed);
  }

  /** The cursor after the last line handed out (no allocation; see {@link toPosition}). */
  cursor(): LineCursor {
    return this.consumed;
  }

  /** The snapshot form of a cursor of this reader. */
  toPosition(cursor: LineCursor): LinePosition {
    const { ino, fingerprint, fingerprintBytes } = cursor.file;
    return cursor.skipping === true
      ? { offset: cursor.offset, line: cursor.line, skipping: true, ino, fingerprint, fingerprintBytes }
      : { offset: cursor.offset, line: cursor.line, ino, fingerprint, fingerprintBytes };
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
      const after = this.after[i]!;
      this.consumed = after;
      const bad = this.bad[i];
      if (bad === null) {
        onLine(this.lines[i]!, after.line);
        n++;
      } else if (bad !== ROTATED) {
        onBad(bad);
        n++;
      }
    }
    this.compact();
    // Reading ahead stops when the queue is full; a tailing reader at the end of its file waits
    // for a change instead of looking again (looking again on every poll is what spun a core).
    if (!this.eof || this.changed) this.fill();
    if (this.head < this.lines.length) return 'more';
    if (this.eof && !this.options.tail && this.reading === null) return 'end';
    return 'wait';
  }

  /**
   * Puts lines that were handed out back at the front of the queue, to be handed out again, in
   * order, by {@link next} (also by the `next` call running now). `from` is the position before
   * the first of them, where the reader now stands. Used by the CSV source to read the lines
   * that an unterminated quoted field had taken in as records of their own.
   */
  unread(lines: readonly string[], bad: ReadonlyArray<BadLine | null>, after: readonly LineCursor[], from: LineCursor): void {
    const k = lines.length;
    let at: number;
    if (this.head >= k) {
      // Handed-out slots before `head` are free: no shifting.
      at = this.head - k;
    } else {
      const len = this.lines.length;
      for (let i = len - 1; i >= this.head; i--) {
        this.lines[i + k - this.head] = this.lines[i]!;
        this.bad[i + k - this.head] = this.bad[i] ?? null;
        this.after[i + k - this.head] = this.after[i]!;
      }
      at = 0;
      this.lines.length = this.bad.length = this.after.length = len - this.head + k;
    }
    for (let j = 0; j < k; j++) {
      this.lines[at + j] = lines[j]!;
      this.bad[at + j] = bad[j] ?? null;
      this.after[at + j] = after[j]!;
    }
    this.head = at;
    this.consumed = from;
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
    if (this.head < this.lines.length || this.error !== null || this.closed || (this.eof && !this.options.tail)) return Promise.resolve();
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
    if (this.eof && (!this.options.tail || !this.changed)) return;
    this.changed = false;
    this.reading = this.readChunk().then(
      () => {
        this.reading = null;
        // Only news wakes the consumer: an empty look must not (that was a busy loop).
        if (this.head < this.lines.length || (this.eof && !this.options.tail)) this.wake();
        // Keep reading ahead while there is data and room, and look again if the file changed
        // during this look.
        if (!this.eof || this.changed) this.fill();
      },
      (error: unknown) => {
        this.reading = null;
        this.error = fileError('cannot read', this.path, error);
        this.wake();
      },
    );
  }

  /** Whether the file still starts with the bytes this reader has read from it. */
  private async sameContent(handle: FileHandle): Promise<boolean> {
    const { fingerprint, fingerprintBytes } = this.file;
    if (fingerprintBytes === 0) return true;
    const { bytesRead } = await handle.read(this.head1k, 0, fingerprintBytes, 0);
    return bytesRead === fingerprintBytes && fnv1a(FNV_OFFSET, this.head1k, 0, bytesRead) === fingerprint;
  }

  private async readChunk(): Promise<void> {
    this.looks++;
    const handle = this.handle!;
    if (this.options.tail) {
      const st = await handle.stat();
      const grown = st.size > this.readOffset;
      if (st.size < this.readOffset || ((grown || st.mtimeMs !== this.mtimeMs) && !(await this.sameContent(handle)))) {
        // Copy-truncate: shorter, or other first bytes (the size alone misses a file that
        // regrew past the old size before this look).
        this.restarted(st.ino);
      } else if (!grown) {
        this.mtimeMs = st.mtimeMs;
        // At the end of the file we hold: if the path now names another file (rotated by
        // rename, then created anew), go on with that one from its start.
        const current = await stat(this.path).catch(() => null);
        if (current !== null && current.ino !== st.ino) {
          // The old file may have grown between our two looks: finish it before switching.
          if ((await handle.stat()).size > this.readOffset) return this.readChunk();
          // The new file may be gone again by now: then stay, and look at the next change.
          const next = await open(this.path, 'r').catch((error: NodeJS.ErrnoException) => {
            if (error.code === 'ENOENT') return null;
            throw error;
          });
          if (next !== null) {
            this.handle = next;
            await handle.close();
            this.restarted((await next.stat()).ino);
            return this.readChunk();
          }
        }
        this.eof = true;
        return;
      }
      this.mtimeMs = st.mtimeMs;
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
    const file = this.file;
    if (file.fingerprintBytes < FINGERPRINT_BYTES && this.readOffset + bytesRead > file.fingerprintBytes) {
      // The first bytes identify the file: hash them as they are read.
      const from = file.fingerprintBytes - this.readOffset;
      const to = Math.min(bytesRead, FINGERPRINT_BYTES - this.readOffset);
      this.file = { ino: file.ino, fingerprint: fnv1a(file.fingerprint, buf, from, to), fingerprintBytes: this.readOffset + to };
    }
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
        { offset: base + data.length, line: this.lineNo, skipping: true, file: this.file },
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
  private restarted(ino: number): void {
    this.readOffset = 0;
    this.carry = Buffer.alloc(0);
    this.skippingLongLine = false;
    this.lineNo = 0;
    this.file = { ino, fingerprint: FNV_OFFSET, fingerprintBytes: 0 };
    // Lines of the old file still queued are handed out first (their positions name the old
    // file); once they are, the position is the start of the new content.
    const start: LineCursor = { offset: 0, line: 0, file: this.file };
    if (this.head < this.lines.length) this.queue('', start, ROTATED);
    else this.consumed = start;
  }

  /** Accounts for skipped bytes (the rest of an over-long line) without producing a line. */
  private advanceOnly(end: number): void {
    const done: LineCursor = { offset: end, line: this.lineNo, file: this.file };
    if (this.lines.length > this.head) this.after[this.after.length - 1] = done;
    else this.consumed = done;
  }

  private pushLine(data: Buffer, start: number, end: number, endOffset: number, validUtf8: boolean): void {
    this.lineNo++;
    const after: LineCursor = { offset: endOffset, line: this.lineNo, file: this.file };
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

  private queue(line: string, after: LineCursor, bad: BadLine | null): void {
    this.lines.push(line);
    this.after.push(after);
    this.bad.push(bad);
  }
}
