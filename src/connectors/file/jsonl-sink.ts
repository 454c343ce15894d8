import { closeSync, fsyncSync, mkdirSync, openSync, renameSync, writeSync } from 'node:fs';
import { appendFile, open, readdir, readFile, rm, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import type { Batch } from '../../runtime/batch.ts';
import type { Committable, Sink, SinkContext } from '../../runtime/sink.ts';
import { formatLines } from '../lines.ts';

/** Options of {@link JsonlSink}. */
export interface JsonlSinkOptions<T> {
  /** Keep the file's content on a fresh start instead of replacing it. */
  readonly append?: boolean;
  /** How a record becomes a line (default: `JSON.stringify`). */
  readonly format?: (value: T) => string;
}

/** A pre-committed part: a pending file of one checkpoint. */
interface PendingPart {
  readonly file: string;
  readonly size: number;
}

/** One line of the commit log. */
interface LogEntry {
  readonly checkpoint: number;
  readonly instance: number;
  /** Output size before this part; where its bytes go. */
  readonly start: number;
  readonly size: number;
  readonly done: boolean;
}

const CHUNK = 1 << 20;

/**
 * Writes each record as a line of JSON, exactly once across failures. The output file holds only
 * committed lines and only grows: lines are written to a pending file beside it
 * (`<file>.pending/`), which the checkpoint's pre-commit syncs and seals, and which is appended to
 * the output once the checkpoint is complete. Appends are recorded in a commit log
 * (`<file>.commits`): an intent (checkpoint, instance, output offset) before the bytes are
 * written at that offset, and a done mark after, so a commit interrupted by a crash is redone at
 * the same offset, and one already done is skipped. On recovery, pending files of checkpoints
 * that never completed are deleted.
 *
 * The sink runs as one instance (parallel jobs gather its input). A record that cannot be
 * written as JSON (a BigInt, a cycle, `undefined`) is a dead letter of the sink.
 *
 * @example
 * results.sink(new JsonlSink('out/q5.jsonl'));
 */
export class JsonlSink<T> implements Sink<T, PendingPart> {
  readonly parallelism = 1;
  private fd: number | null = null;
  private written = 0;
  private ctx!: SinkContext;
  private readonly pendingDir: string;
  private readonly logPath: string;
  private log: LogEntry[] | null = null;

  constructor(
    readonly path: string,
    private readonly options: JsonlSinkOptions<T> = {},
  ) {
    this.pendingDir = `${path}.pending`;
    this.logPath = `${path}.commits`;
  }

  async open(ctx: SinkContext): Promise<void> {
    this.ctx = ctx;
    mkdirSync(this.pendingDir, { recursive: true });
    if (ctx.restoredCheckpoint === undefined) {
      // A fresh start: no checkpoint vouches for what is in the output or pending.
      await rm(this.logPath, { force: true });
      if (!this.options.append) await open(this.path, 'w').then((h) => h.close());
    }
    await open(this.path, 'a').then((h) => h.close());
    this.log = await this.readLog();
    this.openCurrent();
  }

  write(batch: Batch<T>): void {
    const text = formatLines(batch, this.options.format ?? JSON.stringify, this.ctx);
    if (text.length === 0) return;
    this.written += writeSync(this.fd!, text);
  }

  /** Seals the lines written since the last checkpoint into a pending file of checkpoint `id`. */
  preCommit(checkpointId: number): PendingPart | undefined {
    if (this.written === 0) return undefined;
    fsyncSync(this.fd!);
    closeSync(this.fd!);
    const file = `${checkpointId}-${this.ctx.instance}`;
    renameSync(this.currentPath(), join(this.pendingDir, file));
    const part = { file, size: this.written };
    this.openCurrent();
    return part;
  }

  async commit(committables: ReadonlyArray<Committable<PendingPart>>): Promise<void> {
    for (const c of committables) await this.commitOne(c);
  }

  private async commitOne(c: Committable<PendingPart>): Promise<void> {
    const log = this.log!;
    const entries = log.filter((e) => e.checkpoint === c.checkpointId && e.instance === c.instance);
    const pendingPath = join(this.pendingDir, c.data.file);
    if (entries.some((e) => e.done)) {
      await rm(pendingPath, { force: true });
      return;
    }
    let start = entries[0]?.start;
    if (start === undefined) {
      start = (await stat(this.path)).size;
      await this.appendLog({ checkpoint: c.checkpointId, instance: c.instance, start, size: c.data.size, done: false });
    }
    // Written at its recorded offset, so a commit redone after a crash rewrites the same bytes.
    const source = await open(pendingPath, 'r');
    const target = await open(this.path, 'r+');
    try {
      const buf = Buffer.allocUnsafe(Math.min(CHUNK, Math.max(1, c.data.size)));
      for (let off = 0; off < c.data.size; ) {
        const { bytesRead } = await source.read(buf, 0, Math.min(buf.length, c.data.size - off), off);
        if (bytesRead === 0) throw new Error(`${pendingPath} is shorter than the ${c.data.size} bytes pre-committed`);
        await target.write(buf, 0, bytesRead, start + off);
        off += bytesRead;
      }
      await target.sync();
    } finally {
      await source.close();
      await target.close();
    }
    await this.appendLog({ checkpoint: c.checkpointId, instance: c.instance, start, size: c.data.size, done: true });
    await rm(pendingPath, { force: true });
  }

  /** Recovery: drops pending files of checkpoints after `after` (they never completed) and unsealed lines. */
  async abort(after: number | undefined): Promise<void> {
    for (const name of await readdir(this.pendingDir)) {
      if (name === basename(this.currentPath())) continue;
      const id = Number(name.split('-')[0]);
      if (after === undefined || !(id <= after)) await rm(join(this.pendingDir, name), { force: true });
    }
  }

  close(): void {
    if (this.fd !== null) {
      closeSync(this.fd);
      this.fd = null;
    }
  }

  private currentPath(): string {
    return join(this.pendingDir, `open-${this.ctx.instance}`);
  }

  private openCurrent(): void {
    this.fd = openSync(this.currentPath(), 'w');
    this.written = 0;
  }

  private async readLog(): Promise<LogEntry[]> {
    let text: string;
    try {
      text = await readFile(this.logPath, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw error;
    }
    const out: LogEntry[] = [];
    for (const line of text.split('\n')) {
      if (line.length === 0) continue;
      try {
        out.push(JSON.parse(line) as LogEntry);
      } catch {
        // A torn last line (crash while appending it): that step did not happen.
      }
    }
    return out;
  }

  private async appendLog(entry: LogEntry): Promise<void> {
    await appendFile(this.logPath, JSON.stringify(entry) + '\n');
    const h = await open(this.logPath, 'r');
    try {
      await h.sync();
    } finally {
      await h.close();
    }
    this.log!.push(entry);
  }
}
