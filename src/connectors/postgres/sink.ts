import { createHash } from 'node:crypto';
import { finished } from 'node:stream/promises';
import { Client, type ClientConfig } from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import type { Batch } from '../../runtime/batch.ts';
import type { Committable, Sink, SinkContext } from '../../runtime/sink.ts';
import { clientConfig, ident, literal, parseTableName, type PostgresSinkOptions, validateOptions } from './config.ts';
import { type ColumnInfo, EncodeError, type Encoder, encoderFor } from './encode.ts';
import { classify, describeError, ErrorKind } from './errors.ts';

/**
 * What the sink pre-committed for one checkpoint: the epoch its rows are staged under and how
 * many rows were staged. Small, whatever the number of rows.
 */
export interface PostgresCommittable {
  /** The epoch the rows were staged under: the id of the pre-commit before them (0 on a fresh start). */
  readonly epoch: number;
  /** Rows staged (the commit checks that they are all still there). */
  readonly rows: number;
}

/** Rows encoded for one staging statement (a COPY); they all belong to one epoch. */
interface Chunk {
  readonly id: number;
  readonly epoch: number;
  count: number;
  /** Each row as a line of COPY's text format: instance, epoch, sequence number, op, the columns. */
  readonly lines: string[];
  /** The records and their times, to report a row the server refuses as a dead letter. */
  readonly records: unknown[];
  readonly times: number[];
}

/** A failure the sink cannot get past; it fails the job at the next call. */
class SinkError extends Error {
  override readonly name = 'PostgresSinkError';
}

/** The sink's id is held by another live job (or a previous run's session is still open). */
class SinkInUseError extends SinkError {}

const DEFAULT_ROWS_PER_FLUSH = 5_000;
const DEFAULT_MAX_BUFFERED = 50_000;
const DEFAULT_MAX_REJECTS = 1_000;
/** How long `open` waits for a previous run's session to release the sink's id. */
const IN_USE_WAIT_MS = 10_000;
const MIN_SEQ = '-9223372036854775808';
const MAX_SEQ = '9223372036854775807';
/** Commit records are pruned every this many commits (those older than a day). */
const PRUNE_EVERY = 64;

/** One connection, opened on first use and again after it broke. */
class Session {
  private client: Client | null = null;

  constructor(
    private readonly config: ClientConfig,
    /** Runs on every new connection before it is used (takes the sink's lock). */
    private readonly onConnect?: (client: Client) => Promise<void>,
  ) {}

  async get(): Promise<Client> {
    if (this.client !== null) return this.client;
    const client = new Client(this.config);
    // A connection that breaks while idle emits 'error'; unhandled, it would crash the process.
    client.on('error', () => this.discard(client));
    try {
      await client.connect();
      await this.onConnect?.(client);
    } catch (error) {
      client.end().catch(() => undefined);
      throw error;
    }
    this.client = client;
    return client;
  }

  /** Runs `fn` on the connection; a failure that may have broken it drops the connection. */
  async run<R>(fn: (client: Client) => Promise<R>): Promise<R> {
    const client = await this.get();
    try {
      return await fn(client);
    } catch (error) {
      if (classify(error) === ErrorKind.transient) this.discard(client);
      throw error;
    }
  }

  discard(client: Client): void {
    if (this.client === client) this.client = null;
    client.end().catch(() => undefined);
  }

  async close(): Promise<void> {
    const client = this.client;
    this.client = null;
    if (client !== null) await client.end().catch(() => undefined);
  }
}

/**
 * Writes records into a PostgreSQL table exactly once, through the two-phase sink protocol,
 * with a commit table instead of `PREPARE TRANSACTION` (off by default, and locked on most
 * managed servers).
 *
 * **How.** Rows are written continuously, with `COPY`, `rowsPerFlush` rows at a time, into a staging
 * table of the sink (`spate_stage_<table>_<hash of the sink id>`, beside the target, with the
 * target's column types), tagged with the instance, an **epoch** and a sequence number. The epoch
 * of a row is the id of the last pre-commit before it (the restored checkpoint's id after a
 * restart, 0 on a fresh start): rows written after `preCommit(n)` belong to the next checkpoint.
 * `preCommit(n)` waits until the epoch's rows are staged and returns `{ epoch, rows }`; memory and
 * checkpoints stay small. `commit` applies a checkpoint's staged rows to the target, records
 * `(sink id, instance, checkpoint id)` in the commit table (`spate_commits`) and deletes the staged
 * rows, all in one transaction; committing again finds the record and does nothing (records are
 * pruned after a day; a savepoint restored later finds nothing staged for what it lists, since
 * staged rows live exactly until their commit, and applies nothing twice). `abort(after)`
 * deletes staged rows of epochs from `after` on (checkpoints that never completed) — for this
 * instance and, after rescaling, for old instances `i` with `i mod parallelism` = this instance,
 * whose committables this instance also re-commits (the commit record names the instance that
 * staged the rows, not the one committing them). A fresh start deletes the sink's staged rows and
 * commit records, since its checkpoint ids start again.
 *
 * **Modes.** Append by default. With `key`, upsert: `INSERT … ON CONFLICT (key) DO UPDATE`,
 * applying a checkpoint's rows in write order (the last write of a key wins); with `op`, a record
 * can delete the row with its key instead (change-data-capture streams).
 *
 * **Records it cannot write** become dead letters of the sink: when `write` is called for what
 * can be checked without the server (a value of the wrong type or out of range, text too long
 * for its column or holding NUL, NULL in a NOT NULL or key column, JSON that cannot be
 * serialized, a failing `row` or `op` function); when its rows are staged for what only the server
 * checks (an invalid enum label or address), isolating the row by bisection. Rows the target
 * refuses only at commit (a unique or foreign-key violation, a check or domain constraint, a
 * trigger) are isolated the same way inside the commit transaction: the rest of the checkpoint
 * commits, and each refused row is a dead letter, counted in the commit record's `rejected`
 * column. Dead letters found off the data path are reported when they are found (after the
 * barrier that followed the record; on the job's log once the input has ended), at most once: a
 * crash right after the commit loses the report, not the count. More than `maxRejectsPerCommit`
 * refused rows in one checkpoint stop the commit instead (retried with backoff and logged, the
 * job held back by backpressure) until the table is fixed: a mass rejection is a schema problem,
 * not bad records, and dropping the rows silently would be worse.
 *
 * **Failures.** At `open`, an unreachable server is retried with backoff (logged when it starts
 * and when it ends); an error that retrying cannot fix (authentication, a missing table without
 * `create`, a key without a unique index) fails at once with a clear message. While running, an
 * unreachable server is retried the same way: staging writes wait (the sink reports backpressure
 * once `maxBufferedRows` are waiting, so the job slows down instead of growing memory), commits
 * are retried by the runtime, and nothing is lost or duplicated when the server is back. A staging
 * statement whose outcome is unknown (the connection broke during it) is sent again; the commit
 * then finds more rows than were staged and keeps one per sequence number.
 *
 * One job at a time may use a sink id: the commit connection holds an advisory lock on
 * (sink id, instance), and `open` fails if another session keeps it for 10 s.
 *
 * @example
 * // The last reading of each device, upserted by key, exactly once across failures.
 * const p = new Pipeline();
 * p.source(new GeneratorSource({ count: 1_000, make: (i) => ({ device: `d${i % 10}`, reading: i }) }), { id: 'readings' })
 *   .sink(
 *     new PostgresSink<{ device: string; reading: number }>({
 *       connection: process.env['SPATE_PG_URL'] ?? 'postgres://spate:spate@127.0.0.1:5432/spate',
 *       table: 'latest_readings',
 *       create: { device: 'text', reading: 'bigint' },
 *       key: ['device'],
 *     }),
 *     { id: 'latest' },
 *   );
 * await p.run({ checkpointDir: 'checkpoints' });
 * // latest_readings: (d0, 990), (d1, 991), …, (d9, 999)
 */
export class PostgresSink<T> implements Sink<T, PostgresCommittable> {
  readonly parallelism?: number;
  private ctx!: SinkContext;
  private sinkId = '';
  private writer!: Session;
  private committer!: Session;
  private plan!: Plan;
  private readonly rowsPerFlush: number;
  private readonly maxBuffered: number;
  private readonly maxRejects: number;
  private readonly retryFirst: number;
  private readonly retryMax: number;

  /** The epoch rows are written under now: the id of the last pre-commit (or restored checkpoint). */
  private epoch = 0;
  /** Rows accepted since the last pre-commit. */
  private epochRows = 0;
  /** Rows staged per epoch (after rows the server refused). */
  private readonly staged = new Map<number, number>();
  private seq = 0;
  private current: Chunk | null = null;
  private readonly queue: Chunk[] = [];
  private nextChunkId = 1;
  /** Chunks up to this id are staged. */
  private stagedUpTo = 0;
  private buffered = 0;
  private flushing: Promise<void> | null = null;
  private waiters: Array<{ readonly until: number; readonly resolve: () => void; readonly reject: (e: unknown) => void }> = [];
  private pressure: { promise: Promise<void>; resolve: () => void } | null = null;
  private failure: Error | null = null;
  private closed = false;
  private readonly sleeps = new Set<() => void>();
  private commits = 0;
  private commitFailures = 0;
  /** The line of the record being encoded (added only once every value is encoded). */
  private line = '';

  constructor(private readonly options: PostgresSinkOptions<T>) {
    validateOptions(options);
    if (options.parallelism !== undefined) this.parallelism = options.parallelism;
    this.rowsPerFlush = options.rowsPerFlush ?? DEFAULT_ROWS_PER_FLUSH;
    this.maxBuffered = Math.max(options.maxBufferedRows ?? DEFAULT_MAX_BUFFERED, this.rowsPerFlush);
    this.maxRejects = options.maxRejectsPerCommit ?? DEFAULT_MAX_REJECTS;
    this.retryFirst = options.retryMs?.first ?? 100;
    this.retryMax = options.retryMs?.max ?? 10_000;
  }

  /** The id naming this sink's staged rows and commit records (known once open). */
  get id(): string {
    return this.sinkId;
  }

  /**
   * Connects (waiting for the server with backoff), creates the table if asked, reads its columns
   * and checks the options against them, and creates the staging and commit tables.
   */
  async open(ctx: SinkContext): Promise<void> {
    this.ctx = ctx;
    this.sinkId = this.options.sinkId ?? `${ctx.stepId}:${this.options.table}`;
    this.epoch = ctx.restoredCheckpoint ?? 0;
    const config = clientConfig(this.options.connection, `spate ${this.sinkId}`) as ClientConfig;
    this.committer = new Session(config, (client) => this.lock(client));
    this.writer = new Session(config);
    const started = Date.now();
    for (;;) {
      try {
        await this.retrying('connecting', () => this.committer.run((client) => this.prepare(client)));
        return;
      } catch (error) {
        if (!(error instanceof SinkInUseError) || Date.now() - started > IN_USE_WAIT_MS || this.closed) {
          // Release the connection (and with it the sink id's lock) at once, not only at close.
          await this.committer.close();
          throw error;
        }
        await this.sleep(500);
      }
    }
  }

  write(batch: Batch<T>): void {
    if (this.failure !== null) throw this.failure;
    const { values, times, length } = batch;
    let i = 0;
    while (i < length) {
      try {
        for (; i < length; i++) {
          this.encode(values[i] as T);
          this.add(values[i], times[i]!);
        }
      } catch (error) {
        this.ctx.deadLetter(values[i], error, times[i]!);
        i++;
      }
    }
  }

  backpressure(): Promise<void> | undefined {
    if (this.buffered < this.maxBuffered || this.failure !== null || this.closed) return undefined;
    if (this.pressure === null) {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => (resolve = r));
      this.pressure = { promise, resolve };
    }
    return this.pressure.promise;
  }

  /**
   * Starts the epoch of checkpoint `checkpointId + 1`'s rows and resolves once the rows of the
   * epoch that ends are staged (durable, invisible). Undefined when the epoch has no rows.
   */
  preCommit(checkpointId: number): Promise<PostgresCommittable> | undefined {
    if (this.failure !== null) throw this.failure;
    const epoch = this.epoch;
    const rows = this.epochRows;
    if (this.current !== null) this.enqueue();
    this.epoch = checkpointId;
    this.epochRows = 0;
    if (rows === 0) return undefined;
    return this.stagedThrough(this.nextChunkId - 1).then(() => {
      const staged = this.staged.get(epoch) ?? 0;
      this.staged.delete(epoch);
      return { epoch, rows: staged };
    });
  }

  /** Commits checkpoints in order, one transaction each (idempotent: see the class comment). */
  async commit(committables: ReadonlyArray<Committable<PostgresCommittable>>): Promise<void> {
    for (const c of committables) {
      try {
        await this.commitOne(c);
        if (this.commitFailures > 0) this.log(`commit of checkpoint ${c.checkpointId} succeeded after ${this.commitFailures} failed attempt(s)`);
        this.commitFailures = 0;
      } catch (error) {
        this.commitFailures++;
        // Logged at attempts 1, 2, 4, 8, …: an outage is said once, a problem that stays is not silent.
        if ((this.commitFailures & (this.commitFailures - 1)) === 0) {
          const why = classify(error) === ErrorKind.transient ? 'PostgreSQL is unavailable' : 'the table refuses it; fix the table or the job';
          this.log(`commit of checkpoint ${c.checkpointId} failed (attempt ${this.commitFailures}, ${why}): ${describeError(error)}; retrying with backoff`);
        }
        throw error;
      }
    }
  }

  /**
   * On recovery, after the restored checkpoint's committables were committed again: deletes the
   * rows staged for later checkpoints, and commit records of checkpoints after `after` (a restart
   * from an older checkpoint reuses their ids). On a fresh start: everything of this sink.
   */
  async abort(after: number | undefined): Promise<void> {
    const { parallelism, instance } = this.ctx;
    const abandoned = await this.retrying('aborting', () =>
      this.committer.run(async (client) => {
        await client.query('BEGIN');
        try {
          await client.query(`DELETE FROM ${this.plan.staging} WHERE spate_instance % $1 = $2 AND ($3::bigint IS NULL OR spate_epoch >= $3)`, [parallelism, instance, after ?? null]);
          const r = await client.query<{ checkpoint_id: string }>(
            `DELETE FROM ${this.plan.commits} WHERE sink_id = $1 AND instance % $2 = $3 AND ($4::bigint IS NULL OR checkpoint_id > $4) RETURNING checkpoint_id`,
            [this.sinkId, parallelism, instance, after ?? null],
          );
          await client.query('COMMIT');
          return r.rows.map((row) => Number(row.checkpoint_id));
        } catch (error) {
          await rollback(client, this.committer);
          throw error;
        }
      }),
    );
    if (after !== undefined && abandoned.length > 0) {
      abandoned.sort((a, b) => a - b);
      this.log(
        `the table already holds what checkpoints ${abandoned.join(', ')} committed, after checkpoint ${after} that the job resumes from; ` +
          `they will be written again (${this.plan.key === null ? 'appended twice' : 'upserted over'})`,
      );
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const wake of this.sleeps) wake();
    const error = this.failure ?? new SinkError('the sink was closed');
    for (const w of this.waiters) w.reject(error);
    this.waiters = [];
    this.pressure?.resolve();
    await Promise.all([this.writer?.close(), this.committer?.close()]);
  }

  // ---- open ----

  /** Holds the sink's (id, instance) lock on the commit connection, so two jobs cannot share an id. */
  private async lock(client: Client): Promise<void> {
    const r = await client.query<{ ok: boolean }>('SELECT pg_try_advisory_lock(hashtext($1), $2) AS ok', [this.sinkId, this.ctx.instance]);
    if (!r.rows[0]!.ok) {
      throw new SinkInUseError(
        `sink id '${this.sinkId}' (instance ${this.ctx.instance}) is in use by another session: another job writing with the same sink id, ` +
          `or a previous run that has not disconnected yet; give each job its own \`sinkId\``,
      );
    }
  }

  private async prepare(client: Client): Promise<void> {
    const options = this.options;
    const name = parseTableName(options.table);
    const qualified = name.schema === undefined ? ident(name.name) : `${ident(name.schema)}.${ident(name.name)}`;
    if (options.create !== undefined) await this.createTable(client, qualified);
    const table = await client.query<{ oid: number; schema: string; kind: string }>(
      `SELECT c.oid, n.nspname AS schema, c.relkind AS kind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass($1)`,
      [qualified],
    );
    if (table.rows.length === 0) throw new SinkError(`table ${options.table} does not exist (give \`create\` to create it)`);
    const { oid, schema, kind } = table.rows[0]!;
    if (kind !== 'r' && kind !== 'p') throw new SinkError(`${options.table} is not a table`);
    const all = await readColumns(client, oid);
    let columns: ColumnInfo[];
    if (options.columns !== undefined) {
      columns = options.columns.map((c) => {
        const found = all.find((a) => a.info.name === c);
        if (found === undefined) throw new SinkError(`table ${options.table} has no column ${c} (it has ${all.map((a) => a.info.name).join(', ')})`);
        if (found.generated) throw new SinkError(`column ${c} of ${options.table} is generated by the table (GENERATED ALWAYS); it cannot be written`);
        return found.info;
      });
    } else {
      columns = all.filter((a) => !a.automatic).map((a) => a.info);
      const missingKey = (options.key ?? []).filter((k) => !columns.some((c) => c.name === k));
      if (missingKey.length > 0) throw new SinkError(`key column(s) ${missingKey.join(', ')} are not columns of ${options.table} the sink can write`);
    }
    if (options.key !== undefined) await checkUniqueIndex(client, oid, options.table, options.key);
    const staging = `${ident(schema)}.${ident(stagingName(name.name, this.sinkId))}`;
    const commitName = options.commitTable === undefined ? { schema, name: 'spate_commits' } : parseTableName(options.commitTable);
    const commits = commitName.schema === undefined ? `${ident(schema)}.${ident(commitName.name)}` : `${ident(commitName.schema)}.${ident(commitName.name)}`;
    this.plan = buildPlan(`${ident(schema)}.${ident(name.name)}`, staging, commits, columns, options.key ?? null);
    await this.createSinkTables(client);
  }

  private async createTable(client: Client, qualified: string): Promise<void> {
    const create = this.options.create!;
    let ddl: string;
    if (typeof create === 'string') ddl = create;
    else {
      const defs = Object.entries(create).map(([c, type]) => `${ident(c)} ${type}`);
      if (this.options.key !== undefined) defs.push(`PRIMARY KEY (${this.options.key.map(ident).join(', ')})`);
      ddl = `CREATE TABLE IF NOT EXISTS ${qualified} (${defs.join(', ')})`;
    }
    await inTransaction(client, async () => {
      await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`spate:create:${qualified}`]);
      const exists = await client.query('SELECT to_regclass($1) IS NOT NULL AS e', [qualified]);
      if (!(exists.rows[0] as { e: boolean }).e) await client.query(ddl);
    });
  }

  /** The commit table, and the staging table (recreated when the sink's columns changed and it holds nothing to commit). */
  private async createSinkTables(client: Client): Promise<void> {
    const { staging, commits, signature, stagingDdl } = this.plan;
    await inTransaction(client, async () => {
      await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`spate:create:${commits}`]);
      await client.query(
        `CREATE TABLE IF NOT EXISTS ${commits} (sink_id text NOT NULL, instance integer NOT NULL, checkpoint_id bigint NOT NULL, ` +
          `rows bigint NOT NULL DEFAULT 0, rejected bigint NOT NULL DEFAULT 0, committed_at timestamptz NOT NULL DEFAULT now(), ` +
          `PRIMARY KEY (sink_id, instance, checkpoint_id))`,
      );
    });
    await inTransaction(client, async () => {
      await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`spate:create:${staging}`]);
      const found = await client.query<{ exists: boolean; comment: string | null }>(
        `SELECT to_regclass($1) IS NOT NULL AS exists, obj_description(to_regclass($1), 'pg_class') AS comment`,
        [staging],
      );
      const { exists, comment } = found.rows[0]!;
      if (exists && comment === signature) return;
      if (exists) {
        const held = await client.query(`SELECT 1 FROM ${staging} LIMIT 1`);
        if (held.rows.length > 0 && this.ctx.restoredCheckpoint !== undefined) {
          throw new SinkError(
            `the sink's columns changed since checkpoint ${this.ctx.restoredCheckpoint}, and ${staging} still holds rows staged with the old ones; ` +
              `resume with the old columns, or start without the checkpoint`,
          );
        }
        await client.query(`DROP TABLE ${staging}`);
      }
      await client.query(stagingDdl);
      await client.query(`COMMENT ON TABLE ${staging} IS ${literal(signature)}`);
    });
  }

  // ---- write path ----

  /** Encodes a record as a staging line; throws (a dead letter) if it cannot be written. */
  private encode(record: T): void {
    const plan = this.plan;
    const { op, row } = this.options;
    let kind = 'u';
    if (op !== undefined) {
      const o = op(record);
      if (o === 'delete') kind = 'd';
      else if (o !== 'upsert') throw new EncodeError(`op returned ${String(o)}, not 'upsert' or 'delete'`);
    }
    let values: readonly unknown[] | null = null;
    if (row !== undefined) {
      values = row(record);
      if (!Array.isArray(values) || values.length !== plan.columns.length) {
        throw new EncodeError(`row() must return an array of ${plan.columns.length} values (one per column), got ${Array.isArray(values) ? `${values.length} values` : typeof values}`);
      }
    } else if (record === null || typeof record !== 'object') {
      throw new EncodeError(`a record without \`row\` must be an object with the columns as fields, got ${record === null ? 'null' : typeof record}`);
    }
    const { columns, encoders, isKey } = plan;
    let line = kind;
    for (let c = 0; c < columns.length; c++) {
      const v = values !== null ? values[c] : (record as Record<string, unknown>)[columns[c]!.name];
      if (v === null || v === undefined) {
        if (isKey[c]) throw new EncodeError(`key column ${columns[c]!.name} is ${v === null ? 'null' : 'missing'}`);
        if (kind === 'u' && columns[c]!.notNull) throw new EncodeError(`column ${columns[c]!.name} is NOT NULL but the value is ${v === null ? 'null' : 'missing'}`);
        line += '\t\\N';
      } else if (kind === 'd' && !isKey[c]) line += '\t\\N';
      else line += '\t' + copyText(encoders[c]!(v));
    }
    this.line = line;
  }

  /** Adds the encoded line to the chunk being filled. */
  private add(record: unknown, time: number): void {
    let chunk = this.current;
    if (chunk === null) chunk = this.current = { id: this.nextChunkId++, epoch: this.epoch, count: 0, lines: [], records: [], times: [] };
    chunk.lines.push(`${this.ctx.instance}\t${chunk.epoch}\t${this.seq}\t${this.line}\n`);
    chunk.records.push(record);
    chunk.times.push(time);
    chunk.count++;
    this.seq++;
    this.epochRows++;
    this.buffered++;
    if (chunk.count >= this.rowsPerFlush) this.enqueue();
  }

  private enqueue(): void {
    this.queue.push(this.current!);
    this.current = null;
    this.flushing ??= this.flushLoop().finally(() => (this.flushing = null));
  }

  /** Stages queued chunks one after another; a failure retrying cannot fix fails the sink. */
  private async flushLoop(): Promise<void> {
    while (this.queue.length > 0 && !this.closed) {
      const chunk = this.queue[0]!;
      try {
        await this.stageRange(chunk, 0, chunk.count);
      } catch (error) {
        if (!this.closed) this.fail(new SinkError(`writing to the staging table failed: ${describeError(error)}`, { cause: error }));
        return;
      }
      this.queue.shift();
      this.buffered -= chunk.count;
      this.stagedUpTo = chunk.id;
      this.waiters = this.waiters.filter((w) => {
        if (w.until > this.stagedUpTo) return true;
        w.resolve();
        return false;
      });
      if (this.pressure !== null && this.buffered < this.maxBuffered) {
        this.pressure.resolve();
        this.pressure = null;
      }
    }
  }

  /** Stages rows [lo, hi) of a chunk; a row the server refuses is found by bisection and dead-lettered. */
  private async stageRange(chunk: Chunk, lo: number, hi: number): Promise<void> {
    try {
      const text = (lo === 0 && hi === chunk.count ? chunk.lines : chunk.lines.slice(lo, hi)).join('');
      await this.retrying('writing', () =>
        this.writer.run(async (client) => {
          const copy = client.query(copyFrom(this.plan.copySql));
          copy.end(text);
          await finished(copy);
        }),
      );
      this.staged.set(chunk.epoch, (this.staged.get(chunk.epoch) ?? 0) + (hi - lo));
    } catch (error) {
      if (classify(error) !== ErrorKind.row) throw error;
      if (hi - lo === 1) {
        this.deadLetterLater(chunk.records[lo], new Error(`PostgreSQL refused the row: ${describeError(error)}`), chunk.times[lo]!);
        return;
      }
      const mid = (lo + hi) >>> 1;
      await this.stageRange(chunk, lo, mid);
      await this.stageRange(chunk, mid, hi);
    }
  }

  /** Resolves once every chunk up to `id` is staged. */
  private stagedThrough(id: number): Promise<void> {
    if (this.failure !== null) return Promise.reject(this.failure);
    if (this.stagedUpTo >= id) return Promise.resolve();
    return new Promise((resolve, reject) => this.waiters.push({ until: id, resolve, reject }));
  }

  // ---- commit path ----

  private commitOne(c: Committable<PostgresCommittable>): Promise<void> {
    const plan = this.plan;
    const { epoch, rows } = c.data;
    const rejected: Array<{ record: unknown; error: string }> = [];
    return this.committer.run(async (client) => {
      rejected.length = 0;
      await client.query('BEGIN');
      try {
        const recorded = await client.query(
          `INSERT INTO ${plan.commits} (sink_id, instance, checkpoint_id, rows) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING`,
          [this.sinkId, c.instance, c.checkpointId, rows],
        );
        if (recorded.rowCount === 0) {
          // Committed before (a commit redone after recovery, or retried after an unknown outcome).
          await client.query('ROLLBACK');
          return;
        }
        const count = await client.query<{ n: string }>(`SELECT count(*) AS n FROM ${plan.staging} WHERE spate_instance = $1 AND spate_epoch = $2`, [c.instance, epoch]);
        const staged = Number(count.rows[0]!.n);
        if (staged === 0 && rows > 0) {
          // No record and nothing staged: committed before its record was pruned (records are kept
          // a day; a savepoint restored later re-commits what it held). Keep the new record.
          await client.query('COMMIT');
          this.log(
            `checkpoint ${c.checkpointId} (instance ${c.instance}) has no commit record and none of its ${rows} staged rows: ` +
              `taken as committed before its record was pruned (a restore from an older savepoint)`,
          );
          return;
        }
        if (staged < rows) {
          throw new SinkError(
            `checkpoint ${c.checkpointId} (instance ${c.instance}) pre-committed ${rows} rows but ${plan.staging} holds ${staged} of them ` +
              `(did the sink id or the table change since that checkpoint, or were they deleted by hand?); the commit cannot complete without them`,
          );
        }
        // More rows than staged: a staging statement was sent again after a broken connection; keep one per sequence number.
        const dedupe = staged > rows;
        await client.query('SAVEPOINT spate_apply');
        try {
          await client.query(dedupe ? plan.applyDedupedSql : plan.applySql, [c.instance, epoch, MIN_SEQ, MAX_SEQ]);
        } catch (error) {
          if (classify(error) !== ErrorKind.row) throw error;
          await client.query('ROLLBACK TO SAVEPOINT spate_apply');
          rejected.push(...(await this.applyIsolating(client, c, dedupe)));
        }
        await client.query(`DELETE FROM ${plan.staging} WHERE spate_instance = $1 AND spate_epoch = $2`, [c.instance, epoch]);
        if (rejected.length > 0) {
          await client.query(`UPDATE ${plan.commits} SET rejected = $4 WHERE sink_id = $1 AND instance = $2 AND checkpoint_id = $3`, [
            this.sinkId,
            c.instance,
            c.checkpointId,
            rejected.length,
          ]);
        }
        // Records of old checkpoints are pruned after a day: they matter only to a restore from a
        // checkpoint that still lists them, and such a commit finds nothing staged (see above).
        if (++this.commits % PRUNE_EVERY === 0) {
          await client.query(
            `DELETE FROM ${plan.commits} WHERE sink_id = $1 AND instance = $2 AND checkpoint_id < $3 AND committed_at < now() - interval '1 day'`,
            [this.sinkId, c.instance, c.checkpointId],
          );
        }
        await client.query('COMMIT');
      } catch (error) {
        await rollback(client, this.committer);
        throw error;
      }
    }).then(() => {
      for (const r of rejected) this.deadLetterLater(r.record, new Error(`PostgreSQL refused the row at the commit of checkpoint ${c.checkpointId}: ${r.error}`), NaN);
    });
  }

  /**
   * Applies a checkpoint's rows in ranges, within savepoints, to find the rows the table refuses
   * (bisection: about 2·k·log(n/k) statements for k refused rows out of n). The rows are first
   * copied to a temporary table indexed by sequence number.
   */
  private async applyIsolating(client: Client, c: Committable<PostgresCommittable>, dedupe: boolean): Promise<Array<{ record: unknown; error: string }>> {
    const plan = this.plan;
    await client.query(`CREATE TEMP TABLE spate_apply ON COMMIT DROP AS ${dedupe ? plan.sourceDedupedSql : plan.sourceSql}`, [c.instance, c.data.epoch]);
    await client.query('CREATE INDEX ON spate_apply (spate_seq)');
    const seqs = (await client.query<{ s: string }>('SELECT spate_seq AS s FROM spate_apply ORDER BY spate_seq')).rows.map((r) => r.s);
    const refused: Array<{ seq: string; error: string }> = [];
    const apply = async (lo: number, hi: number): Promise<void> => {
      await client.query('SAVEPOINT spate_range');
      try {
        await client.query(plan.applyTempSql, [seqs[lo], seqs[hi - 1]]);
        await client.query('RELEASE SAVEPOINT spate_range');
        return;
      } catch (error) {
        if (classify(error) !== ErrorKind.row) throw error;
        await client.query('ROLLBACK TO SAVEPOINT spate_range');
        await client.query('RELEASE SAVEPOINT spate_range');
        if (hi - lo === 1) {
          refused.push({ seq: seqs[lo]!, error: describeError(error) });
          if (refused.length > this.maxRejects) {
            throw new SinkError(
              `the table refuses more than ${this.maxRejects} rows of checkpoint ${c.checkpointId} (the first: ${refused[0]!.error}); ` +
                `the commit waits until the table is fixed`,
            );
          }
          return;
        }
      }
      const mid = (lo + hi) >>> 1;
      await apply(lo, mid);
      await apply(mid, hi);
    };
    if (seqs.length > 0) await apply(0, seqs.length);
    if (refused.length === 0) return [];
    const rows = await client.query<{ seq: string; row: Record<string, unknown> }>(
      `SELECT spate_seq AS seq, to_jsonb(a) - 'spate_instance' - 'spate_epoch' - 'spate_seq' - 'spate_op' AS row FROM spate_apply a WHERE spate_seq = ANY($1::bigint[])`,
      [refused.map((r) => r.seq)],
    );
    const bySeq = new Map(rows.rows.map((r) => [r.seq, r.row]));
    return refused.map((r) => ({ record: bySeq.get(r.seq), error: r.error }));
  }

  // ---- failures, retries, logging ----

  /** Retries `fn` while the server is unreachable, with backoff, logging when it starts and ends. */
  private async retrying<R>(what: string, fn: () => Promise<R>): Promise<R> {
    let delay = this.retryFirst;
    let failures = 0;
    let since = 0;
    for (;;) {
      try {
        const result = await fn();
        if (failures > 0) this.log(`${what}: PostgreSQL answers again, after ${failures} failed attempt(s) over ${((Date.now() - since) / 1000).toFixed(1)} s`);
        return result;
      } catch (error) {
        if (this.closed || classify(error) !== ErrorKind.transient) throw error;
        if (failures === 0) {
          since = Date.now();
          this.log(`${what}: PostgreSQL is unavailable (${describeError(error)}); retrying with backoff up to ${this.retryMax / 1000} s apart`);
        }
        failures++;
        await this.sleep(delay);
        if (this.closed) throw error;
        delay = Math.min(this.retryMax, delay * 2);
      }
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const wake = (): void => {
        clearTimeout(timer);
        this.sleeps.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      this.sleeps.add(wake);
    });
  }

  /** The sink cannot go on: the next `write` or `preCommit` throws `error`, failing the job. */
  private fail(error: Error): void {
    this.failure ??= error;
    for (const w of this.waiters) w.reject(this.failure);
    this.waiters = [];
    this.pressure?.resolve();
    this.pressure = null;
  }

  /** A dead letter found off the data path (staging or commit); under fail-fast it fails the sink. */
  private deadLetterLater(record: unknown, error: Error, time: number): void {
    try {
      this.ctx.deadLetter(record, error, time);
    } catch (failure) {
      this.fail(failure instanceof Error ? failure : new SinkError(String(failure)));
    }
  }

  private log(line: string): void {
    const message = `PostgreSQL sink ${this.sinkId}: ${line}`;
    if (this.ctx.log !== undefined) this.ctx.log(message);
    else process.stderr.write(`spate: ${message}\n`);
  }
}

/** The statements of one sink, built once its columns are known. */
interface Plan {
  readonly target: string;
  readonly staging: string;
  readonly commits: string;
  readonly columns: readonly ColumnInfo[];
  readonly encoders: readonly Encoder[];
  readonly isKey: readonly boolean[];
  readonly key: readonly string[] | null;
  /** Kept as the staging table's comment: a changed column set recreates the table. */
  readonly signature: string;
  readonly stagingDdl: string;
  /** Copies chunks into the staging table (COPY's text format). */
  readonly copySql: string;
  /** A checkpoint's rows to apply ($1 instance, $2 epoch): for upserts the last per key. */
  readonly sourceSql: string;
  readonly sourceDedupedSql: string;
  /** Applies them, restricted to sequence numbers $3..$4. */
  readonly applySql: string;
  readonly applyDedupedSql: string;
  /** Applies rows of the temporary table `spate_apply` with sequence numbers $1..$2. */
  readonly applyTempSql: string;
}

function buildPlan(target: string, staging: string, commits: string, columns: readonly ColumnInfo[], key: readonly string[] | null): Plan {
  const names = columns.map((c) => ident(c.name));
  const list = names.join(', ');
  const stagingDdl =
    `CREATE TABLE ${staging} (spate_instance integer NOT NULL, spate_epoch bigint NOT NULL, spate_seq bigint NOT NULL, spate_op "char" NOT NULL, ` +
    `${columns.map((c, i) => `${names[i]} ${c.type}`).join(', ')})`;
  const copySql = `COPY ${staging} (spate_instance, spate_epoch, spate_seq, spate_op, ${list}) FROM STDIN`;
  const where = `spate_instance = $1 AND spate_epoch = $2`;
  let sourceSql: string;
  let sourceDedupedSql: string;
  if (key === null) {
    sourceSql = `SELECT * FROM ${staging} WHERE ${where}`;
    sourceDedupedSql = `SELECT DISTINCT ON (spate_seq) * FROM ${staging} WHERE ${where} ORDER BY spate_seq`;
  } else {
    const k = key.map(ident).join(', ');
    // The last write of each key (copies of one sequence number are identical, so also deduplicated).
    sourceSql = sourceDedupedSql = `SELECT DISTINCT ON (${k}) * FROM ${staging} WHERE ${where} ORDER BY ${k}, spate_seq DESC`;
  }
  const apply = (source: string, lo: string, hi: string): string => {
    const range = `s.spate_seq BETWEEN ${lo}::bigint AND ${hi}::bigint`;
    if (key === null) return `INSERT INTO ${target} (${list}) SELECT ${names.map((n) => `s.${n}`).join(', ')} FROM (${source}) s WHERE ${range}`;
    const keyNames = key.map(ident);
    const others = names.filter((n) => !keyNames.includes(n));
    const onConflict = others.length === 0 ? 'DO NOTHING' : `DO UPDATE SET ${others.map((n) => `${n} = EXCLUDED.${n}`).join(', ')}`;
    return (
      `WITH s AS (${source}), ` +
      `d AS (DELETE FROM ${target} t USING s WHERE s.spate_op = 'd' AND ${range} AND ${keyNames.map((n) => `t.${n} = s.${n}`).join(' AND ')}) ` +
      `INSERT INTO ${target} (${list}) SELECT ${names.map((n) => `s.${n}`).join(', ')} FROM s WHERE s.spate_op = 'u' AND ${range} ` +
      `ON CONFLICT (${keyNames.join(', ')}) ${onConflict}`
    );
  };
  return {
    target,
    staging,
    commits,
    columns,
    encoders: columns.map(encoderFor),
    isKey: columns.map((c) => key?.includes(c.name) ?? false),
    key,
    signature: `spate staging v1 ${JSON.stringify(columns.map((c) => [c.name, c.type]))}`,
    stagingDdl,
    copySql,
    sourceSql,
    sourceDedupedSql,
    applySql: apply(sourceSql, '$3', '$4'),
    applyDedupedSql: apply(sourceDedupedSql, '$3', '$4'),
    applyTempSql: apply('SELECT * FROM spate_apply', '$1', '$2'),
  };
}

const COPY_SPECIAL = /[\\\t\n\r]/;
const COPY_ESCAPES: Record<string, string> = { '\\': '\\\\', '\t': '\\t', '\n': '\\n', '\r': '\\r' };

/** A value in COPY's text format: backslash, tab, newline and carriage return escaped. */
function copyText(text: string): string {
  return COPY_SPECIAL.test(text) ? text.replace(/[\\\t\n\r]/g, (c) => COPY_ESCAPES[c]!) : text;
}

/** `spate_stage_<table>_<hash of the sink id>`, within PostgreSQL's 63 bytes. */
function stagingName(table: string, sinkId: string): string {
  const hash = createHash('sha256').update(sinkId).digest('hex').slice(0, 10);
  const base = table.replace(/[^A-Za-z0-9_]/g, '_').slice(0, 30);
  return `spate_stage_${base}_${hash}`;
}

/** A column of the table as the catalog describes it. */
interface CatalogColumn {
  readonly info: ColumnInfo;
  /** Generated, identity or serial: filled by the table, not written by default. */
  readonly automatic: boolean;
  /** A generated column or an identity GENERATED ALWAYS: cannot be written at all. */
  readonly generated: boolean;
}

async function readColumns(client: Client, oid: number): Promise<CatalogColumn[]> {
  // Domains are resolved to their base type in the staging table (their constraints are checked
  // when rows reach the table; a NOT NULL domain would refuse the NULLs of a delete's other columns).
  const r = await client.query<{
    name: string;
    type: string;
    typname: string;
    is_array: boolean;
    elem: string | null;
    not_null: boolean;
    automatic: boolean;
    generated: boolean;
    typmod: number;
  }>(
    `SELECT a.attname AS name,
            format_type(b.oid, CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE a.atttypmod END) AS type,
            b.typname, b.typcategory = 'A' AND b.typelem <> 0 AS is_array, e.typname AS elem,
            a.attnotnull OR (t.typtype = 'd' AND t.typnotnull) AS not_null,
            (a.attgenerated <> '' OR a.attidentity <> '' OR coalesce(pg_get_expr(d.adbin, d.adrelid) LIKE 'nextval(%', false)) AS automatic,
            (a.attgenerated <> '' OR a.attidentity = 'a') AS generated,
            CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE a.atttypmod END AS typmod
       FROM pg_attribute a
       JOIN pg_type t ON t.oid = a.atttypid
       JOIN pg_type b ON b.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
       LEFT JOIN pg_type e ON e.oid = b.typelem AND b.typcategory = 'A'
       LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
      WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
      ORDER BY a.attnum`,
    [oid],
  );
  return r.rows.map((row) => {
    const typname = row.is_array && row.elem !== null ? row.elem : row.typname;
    const bounded = (typname === 'varchar' || typname === 'bpchar') && row.typmod > 4;
    return {
      automatic: row.automatic,
      generated: row.generated,
      info: {
        name: row.name,
        type: row.type,
        typname,
        isArray: row.is_array,
        notNull: row.not_null,
        maxLength: bounded ? row.typmod - 4 : undefined,
      },
    };
  });
}

/** Upserts need a unique index on exactly the key columns (what `ON CONFLICT (key)` infers). */
async function checkUniqueIndex(client: Client, oid: number, table: string, key: readonly string[]): Promise<void> {
  const r = await client.query<{ cols: string[] }>(
    `SELECT array(SELECT a.attname::text FROM unnest(i.indkey[0:i.indnkeyatts - 1]) k JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k) AS cols
       FROM pg_index i WHERE i.indrelid = $1 AND i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL`,
    [oid],
  );
  const want = [...key].sort();
  const ok = r.rows.some((row) => {
    const have = [...row.cols].sort();
    return have.length === want.length && have.every((c, i) => c === want[i]);
  });
  if (!ok) throw new SinkError(`upsert by (${key.join(', ')}) needs a primary key or unique index on exactly these columns of ${table}`);
}

async function inTransaction(client: Client, fn: () => Promise<void>): Promise<void> {
  await client.query('BEGIN');
  try {
    await fn();
    await client.query('COMMIT');
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  }
}

/** Rolls back after a failure; a connection that cannot even do that is dropped. */
async function rollback(client: Client, session: Session): Promise<void> {
  try {
    await client.query('ROLLBACK');
  } catch {
    session.discard(client);
  }
}

