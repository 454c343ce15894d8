import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { type FileHandle, open, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { crc32 } from 'node:zlib';

/** Options of {@link WriteAheadLog}. */
export interface WriteAheadLogOptions {
  /** A segment file is closed and a new one started past this size (default 64 MiB). */
  readonly segmentBytes?: number;
}

/** Entry header: payload length (u32) and CRC-32 of the payload (u32). */
const HEADER = 8;
const SEGMENT = /^(\d{16})\.wal$/;
/** Holds the pid of the process that owns the log. */
const LOCK = 'LOCK';
/** Holds the sequence number up to which readers committed (written by `truncate`). */
const COMMITTED = 'COMMITTED';

/** The logs open in this process, by absolute directory: one instance per directory, shared. */
const opened = new Map<string, { log: Promise<WriteAheadLog>; refs: number }>();

interface Segment {
  /** Sequence number of its first entry. */
  readonly first: number;
  readonly path: string;
  /** Entries in it (known for closed segments and the open one). */
  count: number;
  bytes: number;
}

/**
 * A local write-ahead log for push sources (HTTP, WebSocket, MQTT): what arrives is appended and
 * made durable (fsync) *before* it is acknowledged to the sender, read back by the source's reader,
 * replayed from a checkpoint's position after a crash, and truncated once a checkpoint that
 * covers it is complete. So nothing acknowledged is lost across kill -9, and nothing is kept
 * longer than needed.
 *
 * Entries get consecutive sequence numbers from 0 for the life of the directory. They live in
 * segment files (`<first sequence>.wal`), each entry framed with its length and CRC-32; on open,
 * a torn tail (a crash during an append that was never acknowledged) is cut off. Concurrent
 * appends share one fsync (group commit).
 *
 * One process owns a log at a time: a `LOCK` file holds its pid, and opening a log that a live
 * process holds fails. Within a process, opening a directory that is already open returns the same
 * instance (reference counted: every `open` needs its `close`), so an endpoint that writes and the
 * source reader that reads share one log. `truncate` also records the committed position, which a
 * reader starting without a checkpoint resumes from (`committedSequence`).
 *
 * @example
 * const wal = await WriteAheadLog.open('.spate/ingest/wal-0');
 * const { last } = await wal.append([Buffer.from('{"device":"a","t":21.5}')]); // durable now: acknowledge
 * const cursor = wal.cursor(0); // what the reader polls
 * await wal.truncate(last + 1); // after the checkpoint that read up to `last` completed
 */
export class WriteAheadLog {
  private readonly segments: Segment[] = [];
  private handle: FileHandle | null = null;
  private next = 0;
  /** Entries before this are written to their segment (not necessarily synced). */
  private written = 0;
  /** Entries before this are durable: readers see only these. */
  private durable = 0;
  /** Appended, not yet written: the next round writes them all with one write and one fsync. */
  private queued: Array<{ readonly first: number; readonly count: number; readonly data: Buffer; readonly resolve: (r: { first: number; last: number }) => void; readonly reject: (error: Error) => void }> = [];
  /** The write-and-sync loop, while it runs. */
  private pumping: Promise<void> | null = null;
  /** A write or sync failed: what was acknowledged is intact, but nothing more can be appended. */
  private failed: Error | null = null;
  private readonly listeners = new Set<() => void>();
  private closed = false;
  private committed = 0;
  private readonly segmentBytes: number;

  private constructor(
    readonly dir: string,
    options: WriteAheadLogOptions,
  ) {
    this.segmentBytes = options.segmentBytes ?? 64 << 20;
    if (!(this.segmentBytes >= 1024)) throw new RangeError(`segmentBytes must be >= 1024, got ${options.segmentBytes}`);
  }

  /**
   * Opens (or creates) the log in `dir`, cutting off a torn tail left by a crash. Fails if another
   * live process owns it. A directory already open in this process gives the same instance (its
   * first opener's options apply).
   */
  static async open(dir: string, options: WriteAheadLogOptions = {}): Promise<WriteAheadLog> {
    const path = resolve(dir);
    let entry = opened.get(path);
    if (entry === undefined) {
      const wal = new WriteAheadLog(path, options);
      entry = { log: wal.recover().then(() => wal), refs: 0 };
      opened.set(path, entry);
    }
    entry.refs++;
    try {
      return await entry.log;
    } catch (error) {
      if (--entry.refs === 0 && opened.get(path) === entry) opened.delete(path);
      throw error;
    }
  }

  private async recover(): Promise<void> {
    mkdirSync(this.dir, { recursive: true });
    this.lock();
    const names = (await readdir(this.dir)).filter((n) => SEGMENT.test(n)).sort();
    for (const name of names) {
      this.segments.push({ first: Number(SEGMENT.exec(name)![1]), path: join(this.dir, name), count: 0, bytes: 0 });
    }
    for (let i = 0; i < this.segments.length; i++) {
      const s = this.segments[i]!;
      const { count, bytes } = await scan(s.path);
      s.count = count;
      s.bytes = bytes;
      const expectedNext = this.segments[i + 1]?.first;
      if (expectedNext !== undefined && s.first + count !== expectedNext) {
        throw new Error(`write-ahead log ${this.dir}: segment ${s.path} holds ${count} entries, the next segment starts at ${expectedNext}`);
      }
    }
    const last = this.segments.at(-1);
    if (last !== undefined) {
      // Cut a torn or corrupt tail (never acknowledged: acknowledgements follow the fsync).
      const h = await open(last.path, 'r+');
      await h.truncate(last.bytes);
      await h.sync();
      this.handle = h;
      this.next = last.first + last.count;
    }
    this.written = this.next;
    this.durable = this.next;
    try {
      const text = readFileSync(join(this.dir, COMMITTED), 'utf8').trim();
      const n = Number(text);
      if (Number.isSafeInteger(n) && n >= 0) this.committed = n;
    } catch {
      // Never committed.
    }
    this.committed = Math.min(Math.max(this.committed, this.firstSequence), this.next);
  }

  /** Takes the `LOCK` file, or fails naming the live process that holds it. */
  private lock(): void {
    const path = join(this.dir, LOCK);
    try {
      writeFileSync(path, String(process.pid), { flag: 'wx' });
      return;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    const holder = Number(readFileSync(path, 'utf8').trim());
    if (Number.isSafeInteger(holder) && holder > 0 && holder !== process.pid && alive(holder)) {
      throw new Error(`write-ahead log ${this.dir} is in use by process ${holder}`);
    }
    // Left by a process that died (kill -9): take it over.
    writeFileSync(path, String(process.pid));
  }

  /** The sequence number the next entry will get. */
  get nextSequence(): number {
    return this.next;
  }

  /** Entries before this sequence number are durable (and readable). */
  get durableSequence(): number {
    return this.durable;
  }

  /** The first sequence number still in the log. */
  get firstSequence(): number {
    return this.segments[0]?.first ?? this.next;
  }

  /**
   * The position readers committed last (`truncate`): where a reader that starts without a
   * checkpoint begins, so that entries a previous run already committed are not read again.
   */
  get committedSequence(): number {
    return this.committed;
  }

  /**
   * Appends entries; resolves with their sequence numbers once they are durable on disk, which
   * is when the sender may be acknowledged. Appends are written in call order; the appends that
   * arrive while a round writes and syncs go together in the next round: one write, one fsync
   * (group commit). After a failed write or sync every append fails.
   */
  append(entries: readonly Uint8Array[]): Promise<{ first: number; last: number }> {
    if (this.closed) return Promise.reject(new Error(`write-ahead log ${this.dir} is closed`));
    if (this.failed !== null) return Promise.reject(this.failed);
    if (entries.length === 0) return Promise.resolve({ first: this.next, last: this.next - 1 });
    const first = this.next;
    this.next += entries.length;
    let size = 0;
    for (const e of entries) size += HEADER + e.length;
    const data = Buffer.allocUnsafe(size);
    let at = 0;
    for (const e of entries) {
      data.writeUInt32LE(e.length, at);
      data.writeUInt32LE(crc32(e), at + 4);
      data.set(e, at + HEADER);
      at += HEADER + e.length;
    }
    return new Promise((resolve, reject) => {
      this.queued.push({ first, count: entries.length, data, resolve, reject });
      this.pumping ??= this.pump();
    });
  }

  /** Writes and syncs what is queued, round after round, until nothing is. */
  private async pump(): Promise<void> {
    while (this.queued.length > 0) {
      const round = this.queued;
      this.queued = [];
      try {
        if (this.failed !== null) throw this.failed;
        const data = round.length === 1 ? round[0]!.data : Buffer.concat(round.map((r) => r.data));
        const count = round.reduce((n, r) => n + r.count, 0);
        await this.write(round[0]!.first, count, data);
        await this.handle!.sync();
        this.durable = this.written;
      } catch (error) {
        this.failed ??= error as Error;
        for (const r of round) r.reject(error as Error);
        continue;
      }
      for (const r of round) r.resolve({ first: r.first, last: r.first + r.count - 1 });
      for (const l of this.listeners) l();
    }
    this.pumping = null;
  }

  private async write(first: number, count: number, data: Buffer): Promise<void> {
    let seg = this.segments.at(-1);
    if (seg === undefined || this.handle === null || seg.bytes >= this.segmentBytes) {
      if (this.handle !== null) {
        await this.handle.sync();
        await this.handle.close();
        this.handle = null;
      }
      seg = { first, path: join(this.dir, `${String(first).padStart(16, '0')}.wal`), count: 0, bytes: 0 };
      this.handle = await open(seg.path, 'a');
      this.segments.push(seg);
    }
    let done = 0;
    while (done < data.length) {
      const { bytesWritten } = await this.handle.write(data, done, data.length - done, seg.bytes + done);
      done += bytesWritten;
    }
    seg.bytes += data.length;
    seg.count += count;
    this.written = first + count;
  }

  /** Reads entries from `sequence` on (durable ones only). */
  cursor(sequence: number): WalCursor {
    if (sequence < this.firstSequence) {
      throw new Error(`write-ahead log ${this.dir}: entry ${sequence} was truncated (the log starts at ${this.firstSequence})`);
    }
    return new WalCursor(this, sequence);
  }

  /** Calls `listener` whenever appended entries become durable; returns the unsubscribe function. */
  onDurable(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Records `sequence` as committed (readers are done with every entry before it: a checkpoint
   * that covers them completed) and deletes every segment all of whose entries are before it.
   */
  async truncate(sequence: number): Promise<void> {
    if (sequence > this.committed && !this.closed) {
      this.committed = Math.min(sequence, this.next);
      // Written atomically, not synced: a lost update only means replaying from an older position.
      const tmp = join(this.dir, `${COMMITTED}.tmp`);
      await writeFile(tmp, String(this.committed));
      await rename(tmp, join(this.dir, COMMITTED));
    }
    while (this.segments.length > 1) {
      const s = this.segments[0]!;
      if (s.first + s.count > sequence) break;
      this.segments.shift();
      await rm(s.path, { force: true });
    }
  }

  /** The segments (for the cursor). */
  segmentsFrom(sequence: number): readonly Segment[] {
    return this.segments.filter((s) => s.first + s.count > sequence);
  }

  /** Releases this opener's reference; the last one closes the log and its lock. */
  async close(): Promise<void> {
    const entry = opened.get(this.dir);
    if (entry !== undefined && --entry.refs > 0) return;
    if (entry !== undefined) opened.delete(this.dir);
    if (this.closed) return;
    this.closed = true;
    await this.pumping;
    await this.handle?.close();
    this.handle = null;
    rmSync(join(this.dir, LOCK), { force: true });
  }
}

/** Whether process `pid` exists (EPERM: it does, owned by someone else). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Scans a segment: the number of whole, valid entries and the bytes they span. */
async function scan(path: string): Promise<{ count: number; bytes: number }> {
  const h = await open(path, 'r');
  try {
    const size = (await h.stat()).size;
    let offset = 0;
    let count = 0;
    const header = Buffer.alloc(HEADER);
    while (offset + HEADER <= size) {
      await h.read(header, 0, HEADER, offset);
      const length = header.readUInt32LE(0);
      if (offset + HEADER + length > size) break;
      const payload = Buffer.alloc(length);
      await h.read(payload, 0, length, offset + HEADER);
      if (crc32(payload) !== header.readUInt32LE(4)) break;
      offset += HEADER + length;
      count++;
    }
    return { count, bytes: offset };
  } finally {
    await h.close();
  }
}

/**
 * Reads a {@link WriteAheadLog} from a sequence number on — durable entries only — with a bounded
 * read-ahead, for a source reader: `take` hands out what was read (synchronously), `ready`
 * resolves when more is there.
 */
export class WalCursor {
  /** Sequence number of the next entry `take` returns. */
  position: number;
  private readonly buffered: Uint8Array[] = [];
  private head = 0;
  private reading: Promise<void> | null = null;
  private error: unknown = null;
  private waiters: Array<() => void> = [];
  private readonly unsubscribe: () => void;
  /** Where reading goes on: the segment, the byte offset in it, and the entry's sequence number. */
  private segment: string | null = null;
  private offset = 0;
  private seq: number;
  private readonly target: number;

  constructor(
    private readonly wal: WriteAheadLog,
    from: number,
  ) {
    this.position = from;
    this.target = from;
    this.seq = -1;
    this.unsubscribe = wal.onDurable(() => this.fill());
    this.fill();
  }

  /** Up to `max` entries, in order; advances `position`. */
  take(max: number): Uint8Array[] {
    if (this.error !== null) throw this.error;
    const n = Math.min(max, this.buffered.length - this.head);
    const out = this.buffered.slice(this.head, this.head + n);
    this.head += n;
    this.position += n;
    if (this.head > 4096 && this.head * 2 > this.buffered.length) {
      this.buffered.splice(0, this.head);
      this.head = 0;
    }
    this.fill();
    return out;
  }

  /** Resolves when `take` has something, or the read failed. */
  ready(): Promise<void> {
    if (this.head < this.buffered.length || this.error !== null) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  close(): void {
    this.unsubscribe();
  }

  /** The sequence number of the next entry to read from disk. */
  private get readPosition(): number {
    return this.seq < 0 ? this.target : Math.max(this.seq, this.target);
  }

  private fill(): void {
    if (this.reading !== null || this.buffered.length - this.head >= 8192) return;
    if (this.readPosition >= this.wal.durableSequence) return;
    this.reading = this.readMore().then(
      () => {
        this.reading = null;
        this.wake();
        this.fill();
      },
      (error: unknown) => {
        this.reading = null;
        this.error = error;
        this.wake();
      },
    );
  }

  private wake(): void {
    if (this.head >= this.buffered.length && this.error === null) return;
    const w = this.waiters;
    this.waiters = [];
    for (const r of w) r();
  }

  /** Reads up to ~1 MiB of durable entries from where reading stopped. */
  private async readMore(): Promise<void> {
    const durable = this.wal.durableSequence;
    const segments = this.wal.segmentsFrom(this.readPosition);
    let seg = segments[0];
    if (seg === undefined) return;
    if (this.segment !== seg.path) {
      this.segment = seg.path;
      this.offset = 0;
      this.seq = seg.first;
    }
    const h = await open(seg.path, 'r');
    try {
      const buf = Buffer.allocUnsafe(1 << 20);
      const { bytesRead } = await h.read(buf, 0, buf.length, this.offset);
      let at = 0;
      while (at + HEADER <= bytesRead && this.seq < durable) {
        const length = buf.readUInt32LE(at);
        if (at + HEADER + length > bytesRead) {
          if (at === 0) {
            // One entry larger than the buffer: read it whole.
            const big = Buffer.allocUnsafe(HEADER + length);
            await h.read(big, 0, big.length, this.offset);
            this.accept(big, 0, length, seg.path);
            this.offset += HEADER + length;
          }
          break;
        }
        this.accept(buf, at, length, seg.path);
        at += HEADER + length;
      }
      this.offset += at;
      // The segment is done: move to the next one.
      if (this.seq >= seg.first + seg.count && segments[1] !== undefined) {
        seg = segments[1];
        this.segment = seg.path;
        this.offset = 0;
        this.seq = seg.first;
      }
    } finally {
      await h.close();
    }
  }

  private accept(buf: Buffer, at: number, length: number, path: string): void {
    const payload = buf.subarray(at + HEADER, at + HEADER + length);
    if (crc32(payload) !== buf.readUInt32LE(at + 4)) throw new Error(`write-ahead log ${path}: entry ${this.seq} is damaged`);
    if (this.seq >= this.target) this.buffered.push(Buffer.from(payload));
    this.seq++;
  }
}
