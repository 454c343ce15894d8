import { closeSync, existsSync, openSync, readFileSync, realpathSync, rmSync, writeSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { threadId } from 'node:worker_threads';
import type { DuckDBConnection, DuckDBInstance } from '@duckdb/node-api';

/**
 * Options of {@link DuckDBDatabase.open}.
 *
 * @example
 * const db = await DuckDBDatabase.open('results.duckdb', { config: { memory_limit: '1GB' } });
 */
export interface DuckDBOpenOptions {
  /**
   * DuckDB configuration (`threads`, `memory_limit`, …), applied when this call opens the file;
   * ignored (with the file's first configuration kept) when it is open already.
   */
  readonly config?: Readonly<Record<string, string>>;
}

/**
 * A query's result in a JSON-safe form: column names and types, rows as objects.
 *
 * @example
 * const { columns, rows } = await db.queryJson('SELECT count(*) AS n FROM events');
 * // columns: [{ name: 'n', type: 'BIGINT' }], rows: [{ n: '42' }]
 */
export interface DuckDBQueryResult {
  readonly columns: ReadonlyArray<{ readonly name: string; readonly type: string }>;
  /** Values as JSON: BIGINT, HUGEINT and DECIMAL as strings, timestamps in DuckDB's text form (`2025-01-01 12:00:00+00`), lists as arrays, structs as objects. */
  readonly rows: ReadonlyArray<Record<string, unknown>>;
}

/** One open database file of this thread, shared by every handle on it. */
interface Entry {
  readonly path: string;
  readonly instance: DuckDBInstance;
  handles: number;
  /** Writers (sink ids and instances) that hold the file in this process. */
  readonly writers: Set<string>;
  /** The exclusive section in progress (commits run one after another). */
  exclusive: Promise<unknown>;
  /** The connection read-only queries run on (opened on first use). */
  reader: Promise<DuckDBConnection> | null;
  /** The query in progress on the reader connection (queries take turns on it). */
  reading: Promise<unknown>;
  /** The process-wide marker that this thread holds the file (see {@link claimInProcess}). */
  readonly marker: string | null;
}

/** Open files by real path, in this thread. */
const open = new Map<string, Promise<Entry>>();

/** The `@duckdb/node-api` module, loaded on first use (it is a native addon: not loaded by `import 'spate'`). */
let api: Promise<typeof import('@duckdb/node-api')> | null = null;
function duckdb(): Promise<typeof import('@duckdb/node-api')> {
  api ??= import('@duckdb/node-api');
  return api;
}

/** The canonical path of a database file (symbolic links resolved when it exists), or `:memory:`. */
function canonical(path: string): string {
  if (path === ':memory:' || path.startsWith(':memory:')) return path;
  const abs = resolve(path);
  try {
    return realpathSync(abs);
  } catch {
    try {
      return join(realpathSync(dirname(abs)), basename(abs));
    } catch {
      return abs;
    }
  }
}

/**
 * A DuckDB database file, opened once per process and shared: by every {@link DuckDBSink} writing
 * into it (several sinks, several instances of one sink) and by readers that query it while the
 * job runs. DuckDB lets one process at a time open a file for writing (a file lock; another
 * process cannot open it, not even read-only, while the job holds it), and two instances of the
 * same file inside one process would corrupt it — so Spate keeps one per file: `open` returns a
 * handle on the instance this thread already has, and refuses a file that another thread of the
 * process holds. Sinks writing DuckDB run in the thread that built the pipeline (they are local
 * sinks), so worker threads never open the file.
 *
 * {@link query} runs one read-only statement in a transaction of its own: it sees exactly the
 * checkpoints committed so far (never rows staged for checkpoints in progress), while the job goes
 * on writing. Another process that wants to read the results asks the job (over its control
 * channel or HTTP API), or opens the file once the job has stopped.
 *
 * @example
 * const db = await DuckDBDatabase.open('results.duckdb');
 * const rows = await db.query('SELECT device, max(temp) AS t FROM readings GROUP BY device');
 * await db.close();
 */
export class DuckDBDatabase {
  private closed = false;

  private constructor(private readonly entry: Entry) {}

  /** Opens `path` (created if missing), or takes another handle on it if this thread has it open. */
  static async open(path: string, options: DuckDBOpenOptions = {}): Promise<DuckDBDatabase> {
    const key = canonical(path);
    for (;;) {
      const pending = open.get(key);
      if (pending === undefined) break;
      const entry = await pending.catch(() => null);
      if (entry === null || open.get(key) !== pending) continue;
      entry.handles++;
      return new DuckDBDatabase(entry);
    }
    const opening = (async (): Promise<Entry> => {
      const marker = key.startsWith(':memory:') ? null : claimInProcess(key);
      try {
        const { DuckDBInstance } = await duckdb();
        const instance = await DuckDBInstance.create(key, { ...(options.config ?? {}) });
        return { path: key, instance, handles: 1, writers: new Set(), exclusive: Promise.resolve(), reader: null, reading: Promise.resolve(), marker };
      } catch (error) {
        if (marker !== null) rmSync(marker, { force: true });
        throw error;
      }
    })();
    open.set(key, opening);
    try {
      return new DuckDBDatabase(await opening);
    } catch (error) {
      open.delete(key);
      throw error;
    }
  }

  /**
   * Runs one read-only statement against the database of `path`: on the instance this thread has
   * open (a running job's), or by opening the file for the duration of the query (a missing file
   * is an error, not created).
   */
  static async query<R = Record<string, unknown>>(path: string, sql: string): Promise<R[]> {
    const key = canonical(path);
    if (!open.has(key) && !key.startsWith(':memory:') && !existsSync(key)) throw new Error(`no DuckDB database at ${key}`);
    const db = await DuckDBDatabase.open(path);
    try {
      return await db.query<R>(sql);
    } finally {
      await db.close();
    }
  }

  /** The database files this thread has open. */
  static openFiles(): string[] {
    return [...open.keys()];
  }

  /**
   * Runs one read-only statement on a database file this thread has open — a running job's —
   * and answers JSON-safe rows: what the job answers other processes, which cannot open the file
   * while it runs. `path` may be left out when exactly one file is open.
   */
  static async queryOpen(sql: string, path?: string): Promise<DuckDBQueryResult & { readonly database: string }> {
    const files = DuckDBDatabase.openFiles();
    let file: string | undefined;
    if (path === undefined) {
      if (files.length !== 1) throw new Error(files.length === 0 ? 'the job has no DuckDB database open' : `the job has ${files.length} DuckDB databases open; name one: ${files.join(', ')}`);
      file = files[0];
    } else {
      const key = canonical(path);
      file = files.find((f) => f === key);
      if (file === undefined) throw new Error(`the job has no DuckDB database ${key} open${files.length > 0 ? ` (it has ${files.join(', ')})` : ''}`);
    }
    const db = await DuckDBDatabase.open(file!);
    try {
      return { database: db.path, ...(await db.queryJson(sql)) };
    } finally {
      await db.close();
    }
  }

  /** The file's canonical path. */
  get path(): string {
    return this.entry.path;
  }

  /**
   * Runs one read-only SQL statement and returns its rows as objects of JavaScript values (BIGINT
   * as `bigint`, timestamps as `Date`, lists as arrays, …). It sees what was committed when it
   * started; a statement that writes, or more than one statement, is refused.
   */
  async query<R = Record<string, unknown>>(sql: string): Promise<R[]> {
    const reader = await this.readTransaction(sql);
    return reader.getRowObjectsJS() as R[];
  }

  /** {@link query}, with column types and JSON-safe values (for answers sent over a socket or HTTP). */
  async queryJson(sql: string): Promise<DuckDBQueryResult> {
    const reader = await this.readTransaction(sql);
    const names = reader.columnNames();
    const types = reader.columnTypes();
    return { columns: names.map((name, i) => ({ name, type: types[i]!.toString() })), rows: reader.getRowObjectsJson() as Array<Record<string, unknown>> };
  }

  /** A new connection to the database (the caller closes it). */
  async connect(): Promise<DuckDBConnection> {
    this.check();
    return this.entry.instance.connect();
  }

  /**
   * Runs `fn` while no other exclusive section of this database runs: commits of every sink on
   * the file go one after another, so their transactions never conflict with each other.
   */
  exclusive<R>(fn: () => Promise<R>): Promise<R> {
    this.check();
    const run = this.entry.exclusive.then(fn, fn);
    this.entry.exclusive = run.catch(() => undefined);
    return run;
  }

  /**
   * Registers a writer (a sink id and instance) on this file in this process; false if another
   * live sink holds it — two jobs writing with the same sink id would commit each other's rows.
   */
  claimWriter(id: string): boolean {
    this.check();
    if (this.entry.writers.has(id)) return false;
    this.entry.writers.add(id);
    return true;
  }

  releaseWriter(id: string): void {
    this.entry.writers.delete(id);
  }

  /** Releases this handle; the file is closed when its last handle is. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const entry = this.entry;
    if (--entry.handles > 0) return;
    open.delete(entry.path);
    await entry.exclusive;
    await entry.reading;
    const reader = await entry.reader?.catch(() => null);
    reader?.closeSync();
    entry.instance.closeSync();
    if (entry.marker !== null) rmSync(entry.marker, { force: true });
  }

  private check(): void {
    if (this.closed) throw new Error(`DuckDB database ${this.entry.path}: this handle is closed`);
  }

  private async readTransaction(sql: string): Promise<import('@duckdb/node-api').DuckDBResultReader> {
    this.check();
    this.entry.reader ??= this.entry.instance.connect();
    const connection = await this.entry.reader;
    // One reader connection, one query at a time on it (a connection runs one transaction).
    return this.serialReader(async () => {
      const statements = await connection.extractStatements(sql);
      if (statements.count !== 1) throw new Error(`a query must be one SQL statement, got ${statements.count}`);
      await connection.run('BEGIN TRANSACTION READ ONLY');
      try {
        const prepared = await statements.prepare(0);
        return await prepared.runAndReadAll();
      } finally {
        await connection.run('ROLLBACK').catch(() => undefined);
      }
    });
  }

  private serialReader<R>(fn: () => Promise<R>): Promise<R> {
    const run = this.entry.reading.then(fn, fn);
    this.entry.reading = run.catch(() => undefined);
    return run;
  }
}

/**
 * Marks `path` as held by this thread of this process, with a file beside it
 * (`<file>.spate-owner`: pid and thread). DuckDB's own lock works between processes only: a second
 * thread of the same process would get an instance of its own on the same file and corrupt it.
 * A marker left by a dead process is taken over (DuckDB's lock then says whether the file is free).
 */
function claimInProcess(path: string): string | null {
  const marker = `${path}.spate-owner`;
  const me = `${process.pid} ${threadId}`;
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(marker, 'wx');
      writeSync(fd, me);
      closeSync(fd);
      return marker;
    } catch (error) {
      // Cannot write beside the file (read-only directory, say): go without a marker.
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') return null;
    }
    let owner = '';
    try {
      owner = readFileSync(marker, 'utf8').trim();
    } catch {
      continue;
    }
    const [pid, thread] = owner.split(' ').map(Number);
    if (pid === process.pid && thread !== threadId) {
      throw new Error(`DuckDB database ${path} is open in another thread of this process (thread ${thread}); a file is opened once per process — query it through that thread`);
    }
    // Another live process's marker: DuckDB's own lock refuses us (or, if that process has let go
    // of the file without removing its marker, lets us in); a dead process's marker is stale.
    if (pid !== process.pid && alive(pid!)) return null;
    rmSync(marker, { force: true });
  }
  return null;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

