import { createHash } from 'node:crypto';
import type { DuckDBAppender, DuckDBConnection, DuckDBDataChunk, DuckDBVector } from '@duckdb/node-api';
import type { Batch } from '../../runtime/batch.ts';
import type { Committable, Sink, SinkContext } from '../../runtime/sink.ts';
import { ident, literal, parseTableName } from '../postgres/config.ts';
import { type DuckDBSinkOptions, validateDuckDBOptions } from './config.ts';
import { DuckDBDatabase } from './database.ts';
import { type ColumnWriter, type DuckDBColumn, EncodeError, writerFor } from './encode.ts';

/**
 * What the sink pre-committed for one checkpoint: the epoch its rows are staged under and how
 * many. Small, whatever the number of rows.
 *
 * @example
 * sink.preCommit(3); // { epoch: 2, rows: 1500 }: rows written since checkpoint 2, staged
 */
export interface DuckDBCommittable {
  /** The epoch the rows were staged under: the id of the pre-commit before them (0 on a fresh start). */
  readonly epoch: number;
  /** Rows staged. */
  readonly rows: number;
}

/** A failure the sink cannot get past without a fix (the table, the options). */
class SinkError extends Error {
  override readonly name = 'DuckDBSinkError';
}

const DEFAULT_ROWS_PER_FLUSH = 50_000;
const DEFAULT_MAX_REJECTS = 1_000;
/** Commit records are pruned every this many commits (those older than a day). */
const PRUNE_EVERY = 64;

/** The statements and column writers of one sink, built once the table's columns are known. */
interface Plan {
  readonly schema: string;
  readonly target: string;
  readonly commits: string;
  /** `spate_stage_<table>_<hash of the sink id>_`: the staging table of instance i is this prefix and i. */
  readonly stagePrefix: string;
  readonly columns: readonly DuckDBColumn[];
  readonly isKey: readonly boolean[];
  readonly key: readonly string[] | null;
  readonly hasOp: boolean;
  /** Kept as the staging table's comment: a changed column set recreates the table. */
  readonly signature: string;
  /** CHECK constraints of the target (expression and text) and its unique column sets. */
  readonly checks: ReadonlyArray<{ readonly expression: string; readonly text: string }>;
  readonly uniques: ReadonlyArray<readonly string[]>;
}

/**
 * Writes records into a DuckDB table exactly once, through the two-phase sink protocol: the
 * checkpoint id is stored in the same DuckDB transaction as the rows it commits.
 *
 * **How.** `write` converts each record into DuckDB's columnar chunks (checking every value
 * against its column's type) and appends them, with DuckDB's appender, to a staging table of the
 * sink instance (`spate_stage_<table>_<hash of the sink id>_<instance>`, beside the target, with
 * its column types), tagged with an **epoch** — the id of the last pre-commit before the row (the
 * restored checkpoint's after a restart, 0 on a fresh start) — and a sequence number within it. Appended rows
 * are flushed every `rowsPerFlush` rows and at `preCommit(n)`, which returns `{ epoch, rows }`:
 * a flush is a DuckDB commit, so pre-committed rows are durable, and invisible in the target.
 * `commit` applies a checkpoint's staged rows to the target, records `(sink id, instance,
 * checkpoint id)` in the commit table (`spate_commits`) and deletes the staged rows, all in one
 * transaction: committing again finds the record and does nothing. `abort(after)` deletes staged
 * rows of epochs from `after` on — for this instance and, after rescaling, for old instances `i`
 * with `i mod parallelism` = this instance — and commit records of later checkpoints; a fresh start
 * deletes all of the sink's staged rows and commit records, since its checkpoint ids start again.
 *
 * **Modes.** Append by default. With `key`, upsert: one `MERGE` per checkpoint with the last
 * write of each key in write order (no unique index needed); with `op`, a record can delete the
 * row with its key instead. With several instances, commits go in checkpoint order and, within a
 * checkpoint, in instance order: key the stream by the table's key if one key may reach two instances.
 *
 * **One file, one process.** DuckDB lets one process open a database file for writing. The sink
 * is a *local* sink: its instances run in the thread that built the pipeline (worker threads send
 * it their records), all sharing one instance of the file through {@link DuckDBDatabase}, with
 * commits of every sink on the file taking turns. While the job runs, {@link query} (or
 * `DuckDBDatabase.query(path, sql)`) reads the committed results from the same process; another
 * process cannot open the file until the job stops (DuckDB's lock), so it asks the job instead.
 *
 * **Records it cannot write** become dead letters of the sink when they are written: a value of
 * the wrong type or out of range for its column, text that is not valid Unicode, JSON that cannot
 * be serialized, NULL in a NOT NULL or key column, a failing `row` or `op` function. Rows the
 * target's constraints refuse are found when a checkpoint commits — a CHECK constraint that is
 * false, a primary key or unique value already in the table or repeated in the checkpoint — and
 * left out of the commit as dead letters (counted in the commit record's `rejected` column); more
 * than `maxRejectsPerCommit` of them in one checkpoint stop the commit instead (retried with
 * backoff and logged, the job held back by backpressure) until the table is fixed. DuckDB has no
 * savepoints, so a refusal the sink does not foresee (a foreign key) fails the commit the same way.
 *
 * @example
 * // The last reading of each device, upserted by key, exactly once across failures.
 * const p = new Pipeline();
 * const latest = new DuckDBSink<{ device: string; reading: number }>({
 *   path: 'results.duckdb',
 *   table: 'latest_readings',
 *   create: { device: 'VARCHAR', reading: 'BIGINT' },
 *   key: ['device'],
 * });
 * p.source(new GeneratorSource({ count: 1_000, make: (i) => ({ device: `d${i % 10}`, reading: i }) }), { id: 'readings' })
 *   .sink(latest, { id: 'latest' });
 * await p.run({ checkpointDir: 'checkpoints' });
 * await DuckDBDatabase.query('results.duckdb', 'SELECT * FROM latest_readings ORDER BY device');
 * // [{ device: 'd0', reading: 990n }, …, { device: 'd9', reading: 999n }]
 */
export class DuckDBSink<T> implements Sink<T, DuckDBCommittable> {
  readonly local = true;
  readonly parallelism: number;
  private ctx!: SinkContext;
  private opened = false;
  private sinkId = '';
  private db: DuckDBDatabase | null = null;
  private writer: DuckDBConnection | null = null;
  private committer: DuckDBConnection | null = null;
  private appender: DuckDBAppender | null = null;
  private plan!: Plan;
  private writers: ColumnWriter[] = [];
  private chunk: DuckDBDataChunk | null = null;
  private vectors: DuckDBVector[] = [];
  /** Rows filled in the current chunk. */
  private filled = 0;
  /** Rows per chunk: DuckDB's vector size. */
  private readonly chunkSize = 2048;
  /** Rows appended since the last flush. */
  private unflushed = 0;
  private readonly rowsPerFlush: number;
  private readonly maxRejects: number;
  private claimed: string | null = null;

  /** The epoch rows are written under now: the id of the last pre-commit (or restored checkpoint). */
  private epoch = 0;
  private epochBig = 0n;
  /** Rows accepted since the last pre-commit. */
  private epochRows = 0;
  /** The sequence number of the next row within its epoch. */
  private seq = 0;
  private commits = 0;
  private commitFailures = 0;
  private closed = false;

  constructor(private readonly options: DuckDBSinkOptions<T>) {
    validateDuckDBOptions(options);
    this.parallelism = options.parallelism ?? 1;
    this.rowsPerFlush = options.rowsPerFlush ?? DEFAULT_ROWS_PER_FLUSH;
    this.maxRejects = options.maxRejectsPerCommit ?? DEFAULT_MAX_REJECTS;
  }

  /** The id naming this sink's staged rows and commits (known once open). */
  get id(): string {
    return this.sinkId;
  }

  /**
   * Runs one read-only SQL statement against the sink's database while it is open: it sees the
   * checkpoints committed so far. See {@link DuckDBDatabase.query}.
   */
  query<R = Record<string, unknown>>(sql: string): Promise<R[]> {
    if (this.db === null) return DuckDBDatabase.query<R>(this.options.path, sql);
    return this.db.query<R>(sql);
  }

  /** Opens the file (shared), creates the table if asked, reads its columns, creates the staging and commit tables. */
  async open(ctx: SinkContext): Promise<void> {
    if (this.opened) {
      throw new SinkError(
        `this DuckDBSink object is opened a second time (instance ${ctx.instance} of ${ctx.parallelism}): give parallel sinks as a factory, ` +
          `.sink(() => new DuckDBSink(...)), so that each instance has its own`,
      );
    }
    this.opened = true;
    this.ctx = ctx;
    this.sinkId = this.options.sinkId ?? `${ctx.stepId}:${this.options.table}`;
    this.epoch = ctx.restoredCheckpoint ?? 0;
    this.epochBig = BigInt(this.epoch);
    const api = await import('@duckdb/node-api');
    this.db = await DuckDBDatabase.open(this.options.path, this.options.config === undefined ? {} : { config: this.options.config });
    const claim = `${this.sinkId}#${ctx.instance}`;
    if (!this.db.claimWriter(claim)) {
      throw new SinkError(`sink id '${this.sinkId}' (instance ${ctx.instance}) is in use by another job of this process writing ${this.db.path}; give each job its own \`sinkId\``);
    }
    this.claimed = claim;
    this.committer = await this.db.connect();
    this.writer = await this.db.connect();
    await this.db.exclusive(() => this.prepare());
    const stage = this.stageName(ctx.instance);
    this.appender = await this.writer.createAppender(stage, this.plan.schema);
    const types = Array.from({ length: this.appender.columnCount }, (_, i) => this.appender!.columnType(i));
    const fixed = this.plan.hasOp ? 3 : 2;
    this.writers = this.plan.columns.map((c, i) => writerFor(api, c, types[fixed + i]!));
    this.chunk = api.DuckDBDataChunk.create(types, this.chunkSize);
    this.vectors = types.map((_, i) => this.chunk!.getColumnVector(i));
  }

  write(batch: Batch<T>): void {
    const { values, times, length } = batch;
    let i = 0;
    while (i < length) {
      try {
        for (; i < length; i++) this.add(values[i] as T);
      } catch (error) {
        if (!(error instanceof EncodeError) && !(error instanceof UserFunctionError)) throw error;
        this.ctx.deadLetter(values[i], error instanceof UserFunctionError ? error.cause : error, times[i]!);
        i++;
      }
    }
  }

  /**
   * Flushes the epoch's rows to the staging table (durable, invisible) and starts the epoch of the
   * next checkpoint's rows. Undefined when the epoch has no rows.
   */
  preCommit(checkpointId: number): DuckDBCommittable | undefined {
    this.flush();
    const result = this.epochRows === 0 ? undefined : { epoch: this.epoch, rows: this.epochRows };
    this.epoch = checkpointId;
    this.epochBig = BigInt(checkpointId);
    this.epochRows = 0;
    this.seq = 0;
    return result;
  }

  /** Commits checkpoints in order, one transaction each (idempotent: see the class comment). */
  async commit(committables: ReadonlyArray<Committable<DuckDBCommittable>>): Promise<void> {
    for (const c of committables) {
      try {
        const rejected = await this.db!.exclusive(() => this.commitOne(c));
        for (const r of rejected) this.deadLetterLater(r.row, new Error(`DuckDB refused the row at the commit of checkpoint ${c.checkpointId}: ${r.error}`));
        if (this.commitFailures > 0) this.log(`commit of checkpoint ${c.checkpointId} succeeded after ${this.commitFailures} failed attempt(s)`);
        this.commitFailures = 0;
      } catch (error) {
        this.commitFailures++;
        // Logged at attempts 1, 2, 4, 8, …: a problem that stays is not silent, nor is it spam.
        if ((this.commitFailures & (this.commitFailures - 1)) === 0) {
          this.log(`commit of checkpoint ${c.checkpointId} failed (attempt ${this.commitFailures}): ${(error as Error).message}; retrying with backoff`);
        }
        throw error;
      }
    }
  }

  /**
   * On recovery, after the restored checkpoint's committables were committed again: deletes rows
   * staged for later checkpoints (and rows never pre-committed), and commit records of checkpoints
   * after `after` (a restart from an older checkpoint reuses their ids). On a fresh start:
   * everything of this sink.
   */
  async abort(after: number | undefined): Promise<void> {
    const { parallelism, instance } = this.ctx;
    const plan = this.plan;
    const abandoned = await this.db!.exclusive(() =>
      this.transaction(async (c) => {
        const tables = await rows<{ name: string }>(
          c,
          `SELECT table_name AS name FROM duckdb_tables() WHERE database_name = current_database() AND schema_name = ${literal(plan.schema)} AND starts_with(table_name, ${literal(plan.stagePrefix)})`,
        );
        for (const { name } of tables) {
          const owner = Number(name.slice(plan.stagePrefix.length));
          if (!Number.isInteger(owner) || owner % parallelism !== instance) continue;
          const table = `${ident(plan.schema)}.${ident(name)}`;
          await c.run(`DELETE FROM ${table}${after === undefined ? '' : ` WHERE spate_epoch >= ${after}`}`);
          // An instance that no longer exists after rescaling: its table is empty now (what it
          // held was committed above or just deleted).
          if (owner >= parallelism) await c.run(`DROP TABLE ${table}`);
        }
        const gone = await rows<{ id: bigint }>(
          c,
          `DELETE FROM ${plan.commits} WHERE sink_id = ${literal(this.sinkId)} AND instance % ${parallelism} = ${instance}${after === undefined ? '' : ` AND checkpoint_id > ${after}`} RETURNING checkpoint_id AS id`,
        );
        return gone.map((g) => Number(g.id));
      }),
    );
    if (after !== undefined && abandoned.length > 0) {
      abandoned.sort((a, b) => a - b);
      this.log(
        `the table already holds what checkpoints ${abandoned.join(', ')} committed, after checkpoint ${after} that the job resumes from; ` +
          `they will be written again (${plan.key === null ? 'appended twice' : 'upserted over'})`,
      );
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      // Rows never pre-committed are dropped: a restart replays them.
      this.appender?.clear();
      this.appender?.closeSync();
    } catch {
      // The appender failed before; nothing of it is needed.
    }
    this.appender = null;
    this.writer?.closeSync();
    this.committer?.closeSync();
    if (this.claimed !== null) this.db?.releaseWriter(this.claimed);
    await this.db?.close();
  }

  // ---- open ----

  private stageName(instance: number): string {
    return `${this.plan.stagePrefix}${instance}`;
  }

  private async prepare(): Promise<void> {
    const c = this.committer!;
    const options = this.options;
    const name = parseTableName(options.table);
    const schema = name.schema ?? (await rows<{ s: string }>(c, 'SELECT current_schema() AS s'))[0]!.s;
    const target = `${ident(schema)}.${ident(name.name)}`;
    if (options.create !== undefined) await this.createTable(c, schema, name.name, target);
    const found = await rows<{ name: string; type: string; nullable: boolean; dflt: string | null }>(
      c,
      `SELECT column_name AS name, data_type AS type, is_nullable AS nullable, column_default AS dflt FROM duckdb_columns() ` +
        `WHERE database_name = current_database() AND schema_name = ${literal(schema)} AND lower(table_name) = lower(${literal(name.name)}) ORDER BY column_index`,
    );
    if (found.length === 0) throw new SinkError(`table ${options.table} does not exist in ${this.db!.path} (give \`create\` to create it)`);
    // A generated column has an expression in duckdb_columns() but no default in DESCRIBE.
    const described = await rows<{ column_name: string; default: string | null }>(c, `DESCRIBE ${target}`);
    const generated = new Set(found.filter((f) => f.dflt !== null && described.find((d) => d.column_name === f.name)?.default == null).map((f) => f.name));
    const automatic = (f: (typeof found)[number]): boolean => generated.has(f.name) || (f.dflt !== null && /^nextval\(/i.test(f.dflt));
    let chosen: typeof found;
    if (options.columns !== undefined) {
      chosen = options.columns.map((col) => {
        const f = found.find((x) => x.name === col) ?? found.find((x) => x.name.toLowerCase() === col.toLowerCase());
        if (f === undefined) throw new SinkError(`table ${options.table} has no column ${col} (it has ${found.map((x) => x.name).join(', ')})`);
        if (generated.has(f.name)) throw new SinkError(`column ${col} of ${options.table} is generated by the table; it cannot be written`);
        return f;
      });
    } else {
      chosen = found.filter((f) => !automatic(f));
      const missing = (options.key ?? []).filter((k) => !chosen.some((f) => f.name === k));
      if (missing.length > 0) throw new SinkError(`key column(s) ${missing.join(', ')} are not columns of ${options.table} the sink can write`);
    }
    const columns: DuckDBColumn[] = chosen.map((f) => ({ name: f.name, type: f.type, notNull: !f.nullable }));
    const key = options.key ?? null;
    const constraints = await rows<{ type: string; expression: string | null; text: string; cols: string[] }>(
      c,
      `SELECT constraint_type AS type, expression, constraint_text AS text, constraint_column_names AS cols FROM duckdb_constraints() ` +
        `WHERE database_name = current_database() AND schema_name = ${literal(schema)} AND lower(table_name) = lower(${literal(name.name)})`,
    );
    const commitName = options.commitTable === undefined ? { schema, name: 'spate_commits' } : parseTableName(options.commitTable);
    const hash = createHash('sha256').update(this.sinkId).digest('hex').slice(0, 10);
    this.plan = {
      schema,
      target,
      commits: `${ident(commitName.schema ?? schema)}.${ident(commitName.name)}`,
      stagePrefix: `spate_stage_${name.name.replace(/[^A-Za-z0-9_]/g, '_').slice(0, 40)}_${hash}_`,
      columns,
      isKey: columns.map((col) => key?.includes(col.name) ?? false),
      key,
      hasOp: options.op !== undefined,
      signature: `spate staging v2 ${JSON.stringify([options.op !== undefined, columns.map((col) => [col.name, col.type])])}`,
      checks: constraints.filter((k) => k.type === 'CHECK' && k.expression !== null).map((k) => ({ expression: k.expression!, text: k.text })),
      uniques: constraints.filter((k) => k.type === 'PRIMARY KEY' || k.type === 'UNIQUE').map((k) => k.cols),
    };
    await this.createSinkTables(c);
  }

  private async createTable(c: DuckDBConnection, schema: string, table: string, target: string): Promise<void> {
    const create = this.options.create!;
    let ddl: string;
    if (typeof create === 'string') ddl = create;
    else {
      const defs = Object.entries(create).map(([col, type]) => `${ident(col)} ${type}`);
      if (this.options.key !== undefined) defs.push(`PRIMARY KEY (${this.options.key.map(ident).join(', ')})`);
      ddl = `CREATE TABLE ${target} (${defs.join(', ')})`;
    }
    const exists = await rows(
      c,
      `SELECT 1 FROM duckdb_tables() WHERE database_name = current_database() AND schema_name = ${literal(schema)} AND lower(table_name) = lower(${literal(table)})`,
    );
    if (exists.length === 0) await c.run(ddl);
  }

  /** The commit table, and this instance's staging table (recreated when the sink's columns changed and it holds nothing to commit). */
  private async createSinkTables(c: DuckDBConnection): Promise<void> {
    const plan = this.plan;
    await c.run(
      `CREATE TABLE IF NOT EXISTS ${plan.commits} (sink_id VARCHAR NOT NULL, instance INTEGER NOT NULL, checkpoint_id BIGINT NOT NULL, ` +
        `rows BIGINT NOT NULL DEFAULT 0, rejected BIGINT NOT NULL DEFAULT 0, committed_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp)`,
    );
    const name = this.stageName(this.ctx.instance);
    const staging = `${ident(plan.schema)}.${ident(name)}`;
    const found = await rows<{ comment: string | null }>(
      c,
      `SELECT comment FROM duckdb_tables() WHERE database_name = current_database() AND schema_name = ${literal(plan.schema)} AND table_name = ${literal(name)}`,
    );
    if (found.length > 0 && found[0]!.comment === plan.signature) return;
    if (found.length > 0) {
      const held = await rows(c, `SELECT 1 FROM ${staging} LIMIT 1`);
      if (held.length > 0 && this.ctx.restoredCheckpoint !== undefined) {
        throw new SinkError(
          `the sink's columns changed since checkpoint ${this.ctx.restoredCheckpoint}, and ${name} still holds rows staged with the old ones; ` +
            `resume with the old columns, or start without the checkpoint`,
        );
      }
      await c.run(`DROP TABLE ${staging}`);
    }
    const cols = plan.columns.map((col) => `${ident(col.name)} ${col.type}`).join(', ');
    await c.run(`CREATE TABLE ${staging} (spate_epoch BIGINT NOT NULL, spate_seq INTEGER NOT NULL, ${plan.hasOp ? 'spate_delete BOOLEAN NOT NULL, ' : ''}${cols})`);
    await c.run(`COMMENT ON TABLE ${staging} IS ${literal(plan.signature)}`);
  }

  // ---- write path ----

  /** Converts a record into the next row of the chunk; throws (a dead letter) if it cannot be written. */
  private add(record: T): void {
    const plan = this.plan;
    const { op, row } = this.options;
    let del = false;
    if (op !== undefined) {
      let o: unknown;
      try {
        o = op(record);
      } catch (error) {
        throw new UserFunctionError(error);
      }
      if (o === 'delete') del = true;
      else if (o !== 'upsert') throw new EncodeError(`op returned ${String(o)}, not 'upsert' or 'delete'`);
    }
    let values: readonly unknown[] | null = null;
    if (row !== undefined) {
      try {
        values = row(record);
      } catch (error) {
        throw new UserFunctionError(error);
      }
      if (!Array.isArray(values) || values.length !== plan.columns.length) {
        throw new EncodeError(`row() must return an array of ${plan.columns.length} values (one per column), got ${Array.isArray(values) ? `${values.length} values` : typeof values}`);
      }
    } else if (record === null || typeof record !== 'object') {
      throw new EncodeError(`a record without \`row\` must be an object with the columns as fields, got ${record === null ? 'null' : typeof record}`);
    }
    const { columns, isKey } = plan;
    const writers = this.writers;
    const vectors = this.vectors;
    const r = this.filled;
    const fixed = plan.hasOp ? 3 : 2;
    for (let c = 0; c < columns.length; c++) {
      const v = values !== null ? values[c] : (record as Record<string, unknown>)[columns[c]!.name];
      const vector = vectors[fixed + c]!;
      if (v === null || v === undefined) {
        if (isKey[c]) throw new EncodeError(`key column ${columns[c]!.name} is ${v === null ? 'null' : 'missing'}`);
        if (!del && columns[c]!.notNull) throw new EncodeError(`column ${columns[c]!.name} is NOT NULL but the value is ${v === null ? 'null' : 'missing'}`);
        vector.setItem(r, null);
      } else if (del && !isKey[c]) vector.setItem(r, null);
      else writers[c]!(vector, r, v);
    }
    vectors[0]!.setItem(r, this.epochBig);
    vectors[1]!.setItem(r, this.seq);
    if (plan.hasOp) vectors[2]!.setItem(r, del);
    this.seq++;
    this.epochRows++;
    if (++this.filled === this.chunkSize) this.appendChunk();
  }

  /** Hands the filled rows of the chunk to the appender (and flushes every `rowsPerFlush` rows). */
  private appendChunk(): void {
    const n = this.filled;
    if (n === 0) return;
    const chunk = this.chunk!;
    if (n < this.chunkSize) {
      // Rows past the last one hold stale entries of the previous chunk, which the client's list
      // and struct vectors would read while flushing: make them null first.
      for (const v of this.vectors) for (let r = n; r < this.chunkSize; r++) v.setItem(r, null);
    }
    for (const v of this.vectors) v.flush();
    if (n < this.chunkSize) chunk.rowCount = n;
    this.appender!.appendDataChunk(chunk);
    chunk.reset();
    chunk.rowCount = this.chunkSize;
    this.vectors = this.vectors.map((_, i) => chunk.getColumnVector(i));
    this.filled = 0;
    this.unflushed += n;
    if (this.unflushed >= this.rowsPerFlush) this.flush();
  }

  /** Commits what the appender holds to the staging table (DuckDB syncs its log). */
  private flush(): void {
    if (this.filled > 0) this.appendChunk();
    if (this.unflushed === 0) return;
    this.appender!.flushSync();
    this.unflushed = 0;
  }

  // ---- commit path ----

  private async commitOne(c: Committable<DuckDBCommittable>): Promise<Array<{ row: unknown; error: string }>> {
    const plan = this.plan;
    const { epoch, rows: count } = c.data;
    const staging = `${ident(plan.schema)}.${ident(this.stageName(c.instance))}`;
    return this.transaction(async (conn) => {
      const done = await rows(
        conn,
        `SELECT 1 FROM ${plan.commits} WHERE sink_id = ${literal(this.sinkId)} AND instance = ${c.instance} AND checkpoint_id = ${c.checkpointId}`,
      );
      // Committed before (a commit redone after recovery, or retried after a failure that came after it).
      if (done.length > 0) return [];
      const exists = await rows(
        conn,
        `SELECT 1 FROM duckdb_tables() WHERE database_name = current_database() AND schema_name = ${literal(plan.schema)} AND table_name = ${literal(this.stageName(c.instance))}`,
      );
      const staged = exists.length === 0 ? 0 : Number((await rows<{ n: bigint }>(conn, `SELECT count(*) AS n FROM ${staging} WHERE spate_epoch = ${epoch}`))[0]!.n);
      const record = (rejected: number): string =>
        `INSERT INTO ${plan.commits} (sink_id, instance, checkpoint_id, rows, rejected) VALUES (${literal(this.sinkId)}, ${c.instance}, ${c.checkpointId}, ${count}, ${rejected})`;
      if (staged === 0 && count > 0) {
        // No record and nothing staged: committed before its record was pruned (records are kept a
        // day; a savepoint restored later re-commits what it held). Keep the new record.
        await conn.run(record(0));
        this.log(
          `checkpoint ${c.checkpointId} (instance ${c.instance}) has no commit record and none of its ${count} staged rows: ` +
            `taken as committed before its record was pruned (a restore from an older savepoint)`,
        );
        return [];
      }
      if (staged !== count) {
        throw new SinkError(
          `checkpoint ${c.checkpointId} (instance ${c.instance}) pre-committed ${count} rows but ${this.stageName(c.instance)} holds ${staged} of them ` +
            `(did the sink id or the table change since that checkpoint, or were they deleted by hand?); the commit cannot complete without them`,
        );
      }
      const source = this.sourceSql(staging, epoch);
      const refused = await this.refusedRows(conn, source);
      if (refused.length > this.maxRejects) {
        throw new SinkError(
          `the table refuses ${refused.length} rows of checkpoint ${c.checkpointId}, more than maxRejectsPerCommit (${this.maxRejects}); ` +
            `the first: ${refused[0]!.error}; the commit waits until the table is fixed`,
        );
      }
      const without = refused.length === 0 ? '' : ` WHERE spate_seq NOT IN (${refused.map((r) => r.seq).join(', ')})`;
      let rejected: Array<{ row: unknown; error: string }> = [];
      if (refused.length > 0) {
        const seqs = refused.map((r) => r.seq).join(', ');
        const read = await rows<Record<string, unknown>>(conn, `SELECT * EXCLUDE (spate_epoch${plan.hasOp ? ', spate_delete' : ''}) FROM ${staging} WHERE spate_epoch = ${epoch} AND spate_seq IN (${seqs})`);
        const bySeq = new Map(read.map((r) => [String(r['spate_seq']), r]));
        rejected = refused.map((r) => {
          const row = { ...bySeq.get(r.seq) };
          delete row['spate_seq'];
          return { row, error: r.error };
        });
      }
      try {
        await conn.run(this.applySql(`SELECT * FROM (${source})${without}`));
      } catch (error) {
        throw new SinkError(`applying checkpoint ${c.checkpointId} to ${plan.target} failed: ${(error as Error).message}`, { cause: error });
      }
      await conn.run(record(rejected.length));
      await conn.run(`DELETE FROM ${staging} WHERE spate_epoch = ${epoch}`);
      if (++this.commits % PRUNE_EVERY === 0) {
        await conn.run(
          `DELETE FROM ${plan.commits} WHERE sink_id = ${literal(this.sinkId)} AND instance = ${c.instance} AND checkpoint_id < ${c.checkpointId} ` +
            `AND committed_at < current_timestamp - INTERVAL 1 DAY`,
        );
      }
      return rejected;
    });
  }

  /** The rows of a checkpoint to apply: all of them (append), or the last write of each key (upsert). */
  private sourceSql(staging: string, epoch: number): string {
    const where = `spate_epoch = ${epoch}`;
    const key = this.plan.key;
    if (key === null) return `SELECT * FROM ${staging} WHERE ${where}`;
    return `SELECT * FROM ${staging} WHERE ${where} QUALIFY row_number() OVER (PARTITION BY ${key.map(ident).join(', ')} ORDER BY spate_seq DESC) = 1`;
  }

  private applySql(source: string): string {
    const plan = this.plan;
    const names = plan.columns.map((c) => ident(c.name));
    const list = names.join(', ');
    if (plan.key === null) return `INSERT INTO ${plan.target} (${list}) SELECT ${list} FROM (${source})`;
    const keys = plan.key.map(ident);
    const others = names.filter((n) => !keys.includes(n));
    const on = keys.map((k) => `t.${k} = s.${k}`).join(' AND ');
    let sql = `MERGE INTO ${plan.target} t USING (${source}) s ON ${on} `;
    if (plan.hasOp) sql += 'WHEN MATCHED AND s.spate_delete THEN DELETE ';
    if (others.length > 0) sql += `WHEN MATCHED THEN UPDATE SET ${others.map((n) => `${n} = s.${n}`).join(', ')} `;
    sql += `WHEN NOT MATCHED${plan.hasOp ? ' AND NOT s.spate_delete' : ''} THEN INSERT (${list}) VALUES (${names.map((n) => `s.${n}`).join(', ')})`;
    return sql;
  }

  /**
   * The rows of a checkpoint the target's constraints would refuse: a CHECK expression that is
   * false, or a primary key / unique value already in the table (for another key, when upserting)
   * or written earlier in the checkpoint. DuckDB has no savepoints to isolate them by trial.
   */
  private async refusedRows(conn: DuckDBConnection, source: string): Promise<Array<{ seq: string; error: string }>> {
    const plan = this.plan;
    const limit = this.maxRejects + 1;
    const refused = new Map<string, string>();
    const written = new Set(plan.columns.map((c) => c.name.toLowerCase()));
    const applied = plan.hasOp ? `(SELECT * FROM (${source}) WHERE NOT spate_delete)` : `(${source})`;
    for (const check of plan.checks) {
      try {
        const bad = await rows<{ seq: number }>(conn, `SELECT spate_seq AS seq FROM ${applied} WHERE (${check.expression}) IS FALSE ORDER BY spate_seq LIMIT ${limit}`);
        for (const b of bad) if (!refused.has(String(b.seq))) refused.set(String(b.seq), `${check.text} is false`);
      } catch {
        // The expression names a column the sink does not write: the table judges it at apply.
      }
    }
    const keySet = plan.key === null ? '' : [...plan.key].map((k) => k.toLowerCase()).sort().join(',');
    for (const unique of plan.uniques) {
      if (!unique.every((u) => written.has(u.toLowerCase()))) continue;
      // Upserting by exactly this key: the MERGE matches it; no conflict possible.
      if (plan.key !== null && [...unique].map((u) => u.toLowerCase()).sort().join(',') === keySet) continue;
      const cols = unique.map(ident);
      const same = (a: string, b: string): string => cols.map((k) => `${a}.${k} = ${b}.${k}`).join(' AND ');
      const otherKey = plan.key === null ? '' : ` AND NOT (${plan.key.map(ident).map((k) => `t.${k} = s.${k}`).join(' AND ')})`;
      const bad = await rows<{ seq: number; existing: boolean }>(
        conn,
        `SELECT s.spate_seq AS seq, EXISTS (SELECT 1 FROM ${plan.target} t WHERE ${same('t', 's')}${otherKey}) AS existing FROM ${applied} s ` +
          `WHERE ${cols.map((k) => `s.${k} IS NOT NULL`).join(' AND ')} AND (EXISTS (SELECT 1 FROM ${plan.target} t WHERE ${same('t', 's')}${otherKey}) ` +
          `OR EXISTS (SELECT 1 FROM ${applied} e WHERE ${same('e', 's')} AND e.spate_seq < s.spate_seq)) ORDER BY s.spate_seq LIMIT ${limit}`,
      );
      const what = `(${unique.join(', ')})`;
      for (const b of bad) {
        if (!refused.has(String(b.seq))) refused.set(String(b.seq), b.existing ? `the table already holds ${what} of this row (unique)` : `${what} repeats a row written before it in the checkpoint (unique)`);
      }
    }
    return [...refused].map(([seq, error]) => ({ seq, error })).sort((a, b) => Number(a.seq) - Number(b.seq));
  }

  /** Runs `fn` in a transaction on the commit connection; rolls back if it throws. */
  private async transaction<R>(fn: (c: DuckDBConnection) => Promise<R>): Promise<R> {
    const c = this.committer!;
    await c.run('BEGIN TRANSACTION');
    try {
      const result = await fn(c);
      await c.run('COMMIT');
      return result;
    } catch (error) {
      await c.run('ROLLBACK').catch(() => undefined);
      throw error;
    }
  }

  /** A dead letter found off the data path (at commit); under fail-fast it is logged, as the commit already happened. */
  private deadLetterLater(record: unknown, error: Error): void {
    try {
      this.ctx.deadLetter(record, error, NaN);
    } catch (failure) {
      this.log(`dead letter after commit: ${error.message} (${(failure as Error).message})`);
    }
  }

  private log(line: string): void {
    const message = `DuckDB sink ${this.sinkId}: ${line}`;
    if (this.ctx.log !== undefined) this.ctx.log(message);
    else process.stderr.write(`spate: ${message}\n`);
  }
}

/** A failing `row` or `op` function: its record is a dead letter with the function's own error. */
class UserFunctionError extends Error {
  constructor(override readonly cause: unknown) {
    super('user function failed');
  }
}

async function rows<R = Record<string, unknown>>(c: DuckDBConnection, sql: string): Promise<R[]> {
  return (await c.runAndReadAll(sql)).getRowObjectsJS() as R[];
}
