import type { SourceOutput, SourceReader, SourceStatus, Split, SplitOutput } from '../../runtime/source.ts';
import { type WalCursor, WriteAheadLog, type WriteAheadLogOptions } from './write-ahead-log.ts';

/** A write-ahead log a reader reads: one split, named by `id`, in directory `dir`. */
export interface WalLogSpec {
  /** The split's id: stable across runs (checkpoints name it). */
  readonly id: string;
  readonly dir: string;
  readonly options?: WriteAheadLogOptions;
}

/**
 * Turns one log entry into output: `out.emit` for a record, `out.deadLetter` for what is not one.
 * Called in log order; `sequence` is the entry's sequence number. Throwing fails the job.
 */
export type WalEntryHandler<T> = (entry: Uint8Array, out: SplitOutput<T>, sequence: number, log: string) => void;

/**
 * A split position in a write-ahead log: the sequence number of the next entry to read, or null
 * on a fresh start — then the log's committed position (where the previous run's last completed
 * checkpoint left it; 0 for a new log).
 */
export type WalPosition = number | null;

interface OpenLog {
  readonly id: string;
  readonly log: WriteAheadLog;
  readonly cursor: WalCursor;
}

/**
 * The one reader of write-ahead logs, shared by {@link WalSource} and the push sources (HTTP,
 * WebSocket, MQTT): it opens its logs by directory in `open` (never before: a pipeline module is
 * also evaluated in worker threads, where nothing may be opened), reads each from its split's
 * position, snapshots the positions at a checkpoint, and truncates the logs up to them when that
 * checkpoint completes.
 */
export class WalReader<T> implements SourceReader<T> {
  protected logs: OpenLog[] = [];
  private turn = 0;
  /** Positions recorded per checkpoint, to truncate when it completes. */
  private readonly recorded = new Map<number, Map<string, number>>();

  constructor(
    private readonly specs: readonly WalLogSpec[],
    private readonly handle: WalEntryHandler<T>,
  ) {}

  async open(splits: readonly Split[]): Promise<void> {
    for (const s of splits) {
      const spec = this.specs.find((l) => l.id === s.id);
      if (spec === undefined) throw new Error(`no write-ahead log '${s.id}' (the checkpoint names it)`);
      const log = await WriteAheadLog.open(spec.dir, spec.options);
      try {
        const position = (s.position as WalPosition) ?? log.committedSequence;
        this.logs.push({ id: s.id, log, cursor: log.cursor(position) });
      } catch (error) {
        await log.close();
        throw error;
      }
    }
  }

  poll(out: SourceOutput<T>, max: number): SourceStatus {
    for (let tries = 0; tries < this.logs.length; tries++) {
      const l = this.logs[this.turn]!;
      this.turn = (this.turn + 1) % this.logs.length;
      const first = l.cursor.position;
      const entries = l.cursor.take(max);
      if (entries.length === 0) continue;
      const o = out.split(l.id);
      for (let i = 0; i < entries.length; i++) this.handle(entries[i]!, o, first + i, l.id);
      this.afterRead();
      return 'more';
    }
    return 'wait';
  }

  /** Called after entries were taken from a log (push sources release backpressure here). */
  protected afterRead(): void {}

  ready(): Promise<void> {
    return Promise.race(this.logs.map((l) => l.cursor.ready()));
  }

  snapshot(checkpointId: number): Split<number>[] {
    const positions = new Map(this.logs.map((l) => [l.id, l.cursor.position]));
    this.recorded.set(checkpointId, positions);
    return this.logs.map((l) => ({ id: l.id, position: l.cursor.position }));
  }

  async notifyCheckpointComplete(checkpointId: number): Promise<void> {
    const positions = this.recorded.get(checkpointId);
    if (positions === undefined) return;
    for (const id of [...this.recorded.keys()]) if (id <= checkpointId) this.recorded.delete(id);
    for (const l of this.logs) await l.log.truncate(positions.get(l.id) ?? 0);
  }

  describe(origin: number): Record<string, unknown> {
    return { sequence: origin };
  }

  async close(): Promise<void> {
    const logs = this.logs;
    this.logs = [];
    for (const l of logs) l.cursor.close();
    for (const l of logs) await l.log.close();
  }
}

/** The start of a raw payload, as text, for a dead letter (with the payload's full size alongside). */
export function preview(bytes: Uint8Array): string {
  const s = Buffer.from(bytes.buffer, bytes.byteOffset, Math.min(bytes.length, 1000)).toString('utf8');
  return bytes.length > 1000 ? s + '…' : s;
}
