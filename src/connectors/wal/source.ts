import type { Source, SourceOutput, SourceReader, SourceStatus, Split } from '../../runtime/source.ts';
import type { WalCursor, WriteAheadLog } from './write-ahead-log.ts';

/** Options of {@link WalSource}. */
export interface WalSourceOptions<T> {
  /** The logs to read, one split each (e.g. one per ingest partition). */
  readonly logs: ReadonlyArray<{ readonly id: string; readonly log: WriteAheadLog }>;
  /**
   * Turns an entry into a record; throw to reject it (it becomes a dead letter with the log id and
   * sequence number). Returning undefined skips the entry.
   */
  readonly decode: (entry: Uint8Array) => T | undefined;
  /** Event time of a record, if the entry carries it (default: the step's timestamp function or ingestion time). */
  readonly time?: (record: T) => number;
}

/**
 * Reads write-ahead logs written by push endpoints (HTTP, WebSocket, MQTT): the hook through which
 * data pushed at Spate becomes replayable. An endpoint appends what it receives to a
 * {@link WriteAheadLog} and acknowledges once the append is durable; this source reads the logs
 * (one split per log, its position the next sequence number), so a job restored from a checkpoint
 * replays exactly what followed it; when a checkpoint completes, each log is truncated up to the
 * position that checkpoint recorded — what no restore can need again.
 *
 * The logs belong to the thread that receives the data, so the source runs there (`local`): in a
 * parallel job, the main thread reads them and sends what follows to the workers.
 */
export class WalSource<T> implements Source<T> {
  readonly bounded = false;
  readonly local = true;

  constructor(private readonly options: WalSourceOptions<T>) {
    if (options.logs.length === 0) throw new Error('WalSource: no logs');
  }

  splits(): Split<number>[] {
    return this.options.logs.map((l) => ({ id: l.id, position: l.log.firstSequence }));
  }

  createReader(): SourceReader<T> {
    return new WalReader(this.options);
  }
}

interface OpenLog {
  readonly id: string;
  readonly log: WriteAheadLog;
  readonly cursor: WalCursor;
}

class WalReader<T> implements SourceReader<T> {
  private logs: OpenLog[] = [];
  private turn = 0;
  /** Positions recorded per checkpoint, to truncate when it completes. */
  private readonly recorded = new Map<number, Map<string, number>>();

  constructor(private readonly options: WalSourceOptions<T>) {}

  open(splits: readonly Split[]): void {
    this.logs = splits.map((s) => {
      const entry = this.options.logs.find((l) => l.id === s.id);
      if (entry === undefined) throw new Error(`WalSource: no log '${s.id}' (the checkpoint names it)`);
      return { id: s.id, log: entry.log, cursor: entry.log.cursor(s.position as number) };
    });
  }

  poll(out: SourceOutput<T>, max: number): SourceStatus {
    const { decode, time } = this.options;
    for (let tries = 0; tries < this.logs.length; tries++) {
      const l = this.logs[this.turn]!;
      this.turn = (this.turn + 1) % this.logs.length;
      const first = l.cursor.position;
      const entries = l.cursor.take(max);
      if (entries.length === 0) continue;
      const o = out.split(l.id);
      for (let i = 0; i < entries.length; i++) {
        let record: T | undefined;
        try {
          record = decode(entries[i]!);
        } catch (error) {
          o.deadLetter({ log: l.id, sequence: first + i, size: entries[i]!.length, payload: preview(entries[i]!) }, error);
          continue;
        }
        if (record === undefined) continue;
        if (time === undefined) o.emit(record);
        else o.emit(record, time(record));
      }
      return 'more';
    }
    return 'wait';
  }

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

  close(): void {
    for (const l of this.logs) l.cursor.close();
  }
}

/** The start of a raw payload, as text, for a dead letter (with the payload's full size alongside). */
function preview(bytes: Uint8Array): string {
  const s = Buffer.from(bytes.subarray(0, 1000)).toString('utf8');
  return bytes.length > 1000 ? s + '…' : s;
}
