/**
 * Reading the record batches of a fetch response as a `read_committed` consumer: records of
 * aborted transactions and control batches (transaction markers) are skipped, records before the
 * fetch offset (a batch starts before it) are skipped, and the position advances past everything
 * skipped, so a checkpoint never points into the middle of an aborted transaction.
 *
 * The filtering is the Java consumer's (`CompletedFetch`): the aborted transactions of the
 * response, sorted by first offset, enter a set of aborted producer ids as the batches reach their
 * first offsets; a transactional batch of a producer in the set is skipped; the producer leaves
 * the set at its ABORT marker. (`@platformatic/kafka` 1.x keeps one aborted range per producer id
 * per fetch — wrong when a producer aborted twice — and fails on a fetch that starts at an abort
 * marker; hence this.)
 */

/** A record as the wire codec reads it. */
export interface KafkaWireRecord {
  readonly timestampDelta: bigint;
  readonly offsetDelta: number;
  readonly key: Buffer | null;
  readonly value: Buffer | null;
  readonly headers: ReadonlyArray<readonly [Buffer | null, Buffer | null]>;
}

/** A record batch as the wire codec reads it. */
export interface KafkaBatch {
  readonly firstOffset: bigint;
  readonly lastOffsetDelta: number;
  readonly attributes: number;
  readonly firstTimestamp: bigint;
  readonly maxTimestamp: bigint;
  readonly producerId: bigint;
  readonly records: readonly KafkaWireRecord[];
}

const IS_TRANSACTIONAL = 1 << 4;
const IS_CONTROL = 1 << 5;
/** Timestamp type bit: log append time (the batch's max timestamp is every record's time). */
const LOG_APPEND_TIME = 1 << 3;
const ABORT_MARKER = 0;

/**
 * A cursor over the committed records of one partition's fetch response. `next()` moves to the
 * next deliverable record (false at the end) and sets `record`, `offset` and `timestamp`;
 * `position` is where reading resumes after what was consumed (records delivered and batches
 * skipped). No allocation per record.
 */
export class CommittedRecords {
  record: KafkaWireRecord | null = null;
  /** Offset of the current record. */
  offset = 0;
  /** Timestamp of the current record (ms). */
  timestamp = 0;
  /** The offset after everything consumed so far. */
  position: number;
  /** Records skipped as part of aborted transactions (for tests and metrics). */
  abortedSkipped = 0;

  private readonly aborted: Array<{ readonly producerId: bigint; readonly firstOffset: number }>;
  private nextAborted = 0;
  private readonly abortedProducers = new Set<bigint>();
  private batchIndex = -1;
  private batch: KafkaBatch | null = null;
  private recordIndex = 0;
  private batchFirst = 0;
  private batchTime = 0n;
  private appendTime = false;

  /** Records in the batches (delivered or not). */
  readonly count: number;

  constructor(
    private readonly batches: readonly KafkaBatch[],
    abortedTransactions: ReadonlyArray<{ readonly producerId: bigint; readonly firstOffset: number }>,
    /** The offset the fetch asked for: records before it are not delivered. */
    fetchOffset: number,
    /** Records from this offset on are not delivered (a bounded read's end). */
    private readonly end = Infinity,
  ) {
    this.position = fetchOffset;
    let count = 0;
    for (const b of batches) count += b.records.length;
    this.count = count;
    this.aborted = abortedTransactions.length === 0 ? [] : [...abortedTransactions].sort((a, b) => a.firstOffset - b.firstOffset);
  }

  /** Whether all batches were consumed. */
  get done(): boolean {
    return this.batch === null && this.batchIndex >= this.batches.length - 1;
  }

  next(): boolean {
    for (;;) {
      const b = this.batch;
      if (b !== null) {
        const records = b.records;
        while (this.recordIndex < records.length) {
          const r = records[this.recordIndex++]!;
          const offset = this.batchFirst + r.offsetDelta;
          if (offset < this.position) continue;
          if (offset >= this.end) {
            this.finishAt(this.end);
            return false;
          }
          this.record = r;
          this.offset = offset;
          this.timestamp = this.appendTime ? Number(b.maxTimestamp) : Number(this.batchTime + r.timestampDelta);
          this.position = offset + 1;
          return true;
        }
        // The batch's last offset may be beyond its last record (compaction removed records).
        const end = this.batchFirst + b.lastOffsetDelta + 1;
        if (end > this.position) this.position = end;
        this.batch = null;
      }
      if (this.batchIndex + 1 >= this.batches.length) {
        this.record = null;
        return false;
      }
      const next = this.batches[++this.batchIndex]!;
      const first = Number(next.firstOffset);
      const last = first + next.lastOffsetDelta;
      if (last < this.position) continue; // entirely before the fetch offset
      if (first >= this.end) {
        this.finishAt(this.end);
        return false;
      }
      if (next.producerId >= 0n) {
        // Transactions aborted that start at or before this batch's last offset.
        while (this.nextAborted < this.aborted.length && this.aborted[this.nextAborted]!.firstOffset <= last) {
          this.abortedProducers.add(this.aborted[this.nextAborted++]!.producerId);
        }
      }
      const attributes = next.attributes;
      if ((attributes & IS_CONTROL) !== 0) {
        const key = next.records[0]?.key;
        if (key !== null && key !== undefined && key.length >= 4 && key.readInt16BE(2) === ABORT_MARKER) this.abortedProducers.delete(next.producerId);
        this.position = Math.max(this.position, last + 1);
        continue;
      }
      if ((attributes & IS_TRANSACTIONAL) !== 0 && this.abortedProducers.has(next.producerId)) {
        for (const r of next.records) if (first + r.offsetDelta >= this.position) this.abortedSkipped++;
        this.position = Math.max(this.position, last + 1);
        continue;
      }
      this.batch = next;
      this.recordIndex = 0;
      this.batchFirst = first;
      this.batchTime = next.firstTimestamp;
      this.appendTime = (attributes & LOG_APPEND_TIME) !== 0;
    }
  }

  /** Everything before `end` is consumed: the cursor is done, its position `end`. */
  private finishAt(end: number): void {
    this.record = null;
    this.batch = null;
    this.batchIndex = this.batches.length - 1;
    if (end > this.position) this.position = end;
  }
}
