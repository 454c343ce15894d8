/**
 * A replication connection (`replication=database`) through `pg`: creating logical slots with an
 * exported snapshot, and streaming a slot with `pgoutput` over a CopyBoth stream
 * (`pg-copy-streams`' `both`), with standby status updates written by the caller.
 *
 * Why not `pg-logical-replication`: its service confirms what it *received* (automatically per
 * message, and every 10 s from a timer that also takes keepalive positions), whereas a source
 * with exactly-once checkpoints must confirm only what a completed checkpoint covers; turning both
 * off leaves keepalives unanswered; it backpressures only through a promise per message; it
 * converts values with `pg`'s process-wide type parsers (timestamps lose microseconds without a
 * way to get the text back, unchanged TOAST values are indistinguishable from missing ones); and
 * its status-update clock uses a wrong epoch. The protocol itself is small (three frame types,
 * ten message types), so Spate speaks it directly with the two libraries it already uses.
 */
import { Client, type ClientConfig } from 'pg';
import * as copyStreams from 'pg-copy-streams';
import type { Duplex } from 'node:stream';
import { ident, literal } from './config.ts';
import { formatLsn, type Lsn, parseLsn } from './pgoutput.ts';

/** A slot as CREATE_REPLICATION_SLOT returns it. */
export interface CreatedSlot {
  readonly name: string;
  /** Changes of transactions committing at or after it are streamed; the snapshot holds the rest. */
  readonly consistentPoint: Lsn;
  /** The exported snapshot, importable with SET TRANSACTION SNAPSHOT while this connection is open and idle. */
  readonly snapshot: string | undefined;
}

/** `pg-copy-streams`' CopyBoth stream (its type declarations omit it). */
const both = (copyStreams as unknown as { both: (sql: string, options: { alignOnCopyDataFrame: boolean }) => Duplex }).both;

export class ReplicationConnection {
  readonly client: Client;
  private stream: Duplex | null = null;
  private closed = false;
  /** Resolves (never rejects) when the connection is gone, with why. */
  readonly gone: Promise<Error>;
  private markGone!: (e: Error) => void;

  constructor(config: ClientConfig) {
    this.client = new Client({ ...config, replication: 'database' } as ClientConfig);
    this.gone = new Promise((resolve) => (this.markGone = resolve));
    this.client.on('error', (e) => this.markGone(e));
    this.client.on('end', () => this.markGone(new Error('Connection terminated')));
  }

  async connect(): Promise<void> {
    try {
      await this.client.connect();
    } catch (error) {
      this.client.end().catch(() => undefined);
      throw error;
    }
  }

  /** Creates a logical slot with `pgoutput`, exporting its snapshot when asked. */
  async createSlot(name: string, options: { temporary?: boolean; exportSnapshot?: boolean }): Promise<CreatedSlot> {
    const sql = `CREATE_REPLICATION_SLOT ${ident(name)}${options.temporary === true ? ' TEMPORARY' : ''} LOGICAL pgoutput ${options.exportSnapshot === true ? 'EXPORT_SNAPSHOT' : 'NOEXPORT_SNAPSHOT'}`;
    const r = await this.client.query<{ slot_name: string; consistent_point: string; snapshot_name: string | null }>(sql);
    const row = r.rows[0]!;
    return { name: row.slot_name, consistentPoint: parseLsn(row.consistent_point), snapshot: row.snapshot_name ?? undefined };
  }

  /**
   * Starts streaming `slot` from `from` (the server starts from the slot's confirmed position if
   * that is later). `onData` receives each CopyData payload; the stream stops reading the socket
   * while `onData` returns false, until `resume()` (TCP backpressure: the server's walsender
   * waits, and still gets status updates).
   */
  start(slot: string, from: Lsn, publications: readonly string[], onData: (chunk: Buffer) => boolean): void {
    const names = publications.map((p) => ident(p)).join(',');
    const sql = `START_REPLICATION SLOT ${ident(slot)} LOGICAL ${formatLsn(from)} (proto_version '1', publication_names ${literal(names)})`;
    const stream = both(sql, { alignOnCopyDataFrame: true });
    this.stream = stream;
    stream.on('error', (e: Error) => this.markGone(e));
    stream.on('end', () => this.markGone(new Error('the server ended the replication stream')));
    stream.on('data', (chunk: Buffer) => {
      if (!onData(chunk)) stream.pause();
    });
    this.client.query(stream as never);
  }

  /** Reads the socket again after `onData` returned false. */
  resume(): void {
    this.stream?.resume();
  }

  /** Sends a frame to the server (a standby status update); false if the connection is not streaming. */
  send(frame: Buffer): boolean {
    if (this.stream === null || this.closed) return false;
    this.stream.write(frame);
    return true;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.markGone(new Error('closed'));
    const stream = this.stream;
    this.stream = null;
    // Ending a CopyBoth stream politely needs the server to answer; the socket is simply closed.
    stream?.removeAllListeners('data');
    stream?.on('error', () => undefined);
    await Promise.race([this.client.end().catch(() => undefined), new Promise((r) => setTimeout(r, 2_000))]);
    (this.client as unknown as { connection?: { stream?: { destroy?: () => void } } }).connection?.stream?.destroy?.();
  }
}
