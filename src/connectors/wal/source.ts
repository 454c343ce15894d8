import type { Source, SourceReader, Split } from '../../runtime/source.ts';
import { preview, type WalLogSpec, WalReader, type WalPosition } from './reader.ts';

/** Options of {@link WalSource}. */
export interface WalSourceOptions<T> {
  /**
   * The logs to read, by directory, one split each (e.g. one per ingest partition). They are
   * opened when the job opens the source; a log that the writing endpoint has open in this process
   * is shared with it ({@link WriteAheadLog.open}).
   */
  readonly logs: readonly WalLogSpec[];
  /**
   * Turns an entry into a record; throw to reject it (it becomes a dead letter with the log id and
   * sequence number). Returning undefined skips the entry.
   */
  readonly decode: (entry: Uint8Array) => T | undefined;
  /** Event time of a record, if the entry carries it (default: the step's timestamp function or ingestion time). */
  readonly time?: (record: T) => number;
}

/**
 * Reads write-ahead logs written by push endpoints: the hook through which data pushed at Spate
 * becomes replayable. An endpoint appends what it receives to a {@link WriteAheadLog} and
 * acknowledges once the append is durable; this source reads the logs (one split per log, its
 * position the next sequence number), so a job restored from a checkpoint replays exactly what
 * followed it; when a checkpoint completes, each log is truncated up to the position that
 * checkpoint recorded — what no restore can need again. A job started without a checkpoint
 * resumes from the position the last completed checkpoint committed.
 *
 * The built-in endpoints ({@link HttpSource}, {@link WebSocketSource}, {@link MqttSource}) read
 * their logs with the same reader; this source is for endpoints of your own.
 *
 * The logs belong to the thread that receives the data, so the source runs there (`local`): in a
 * parallel job, the main thread reads them and sends what follows to the workers.
 *
 * @example
 * const wal = new WalSource<{ device: string }>({
 *   logs: [{ id: 'ingest-0', dir: '.spate/ingest/ingest-0' }],
 *   decode: (entry) => JSON.parse(Buffer.from(entry).toString('utf8')) as { device: string },
 * });
 * // p.source(wal, { id: 'ingest' })…
 */
export class WalSource<T> implements Source<T> {
  readonly bounded = false;
  readonly local = true;

  constructor(private readonly options: WalSourceOptions<T>) {
    if (options.logs.length === 0) throw new Error('WalSource: no logs');
  }

  splits(): Split<WalPosition>[] {
    return this.options.logs.map((l) => ({ id: l.id, position: null }));
  }

  createReader(): SourceReader<T> {
    const { decode, time } = this.options;
    return new WalReader<T>(this.options.logs, (entry, out, sequence, log) => {
      let record: T | undefined;
      try {
        record = decode(entry);
      } catch (error) {
        out.deadLetter({ log, sequence, size: entry.length, payload: preview(entry) }, error);
        return;
      }
      if (record === undefined) return;
      if (time === undefined) out.emit(record, undefined, sequence);
      else out.emit(record, time(record), sequence);
    });
  }
}
