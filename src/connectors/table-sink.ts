/**
 * What the sinks that write rows into a database table (PostgreSQL, DuckDB) share: the options
 * that say which table, which columns, how a record becomes a row, append or upsert by key,
 * deletes, table creation and the sink's id — one vocabulary for every such sink.
 */

/**
 * What a record does to the table: insert or update its row, or delete the row with its key.
 *
 * @example
 * const op = (c: { kind: string }): RowOp => (c.kind === 'delete' ? 'delete' : 'upsert');
 */
export type RowOp = 'upsert' | 'delete';

/**
 * The options every table sink takes (each sink adds its own: where the database is, buffering, …).
 *
 * @example
 * const table: TableSinkOptions<{ device: string; n: number }> = { table: 'counts', key: ['device'], create: { device: 'text', n: 'bigint' } };
 * new PostgresSink({ ...table, connection: process.env['DATABASE_URL'] });
 * new DuckDBSink({ ...table, path: 'results.duckdb' });
 */
export interface TableSinkOptions<T> {
  /**
   * The target table, `name` or `schema.name`. Names are used as written (quoted), so write them
   * as the database stores them (PostgreSQL: lower case for tables created without quotes).
   */
  readonly table: string;
  /**
   * The columns written. Default: the record's own fields by column name — every column of the
   * table except generated, identity and serial columns; a column with no field gets NULL, a
   * field with no column is ignored.
   */
  readonly columns?: readonly string[];
  /** The values of a record, in `columns` order (default: `record[column]` for each column). */
  readonly row?: (record: T) => readonly unknown[];
  /**
   * Upsert by this key. Rows of one checkpoint are applied in the order they were written, so the
   * last write of a key wins. Without a key the sink appends. (PostgreSQL needs a primary key or
   * unique index on exactly these columns; DuckDB does not.)
   */
  readonly key?: readonly string[];
  /** Marks records as deletes (by key; other columns are ignored). Needs `key`. Default: all upserts. */
  readonly op?: (record: T) => RowOp;
  /**
   * Create the table if it does not exist: a `CREATE TABLE` statement, or column types in the
   * database's SQL (`{ device: 'text', count: 'bigint' }`, with `key` as the primary key).
   */
  readonly create?: string | Readonly<Record<string, string>>;
  /**
   * Names this sink's pre-committed rows and commits (default: `<step id>:<table>`). Two jobs
   * writing the same table with the same step id must set distinct ids; the sink refuses to open
   * while another live job holds its id.
   */
  readonly sinkId?: string;
  /** The commit table (default `spate_commits`, in the target table's schema). */
  readonly commitTable?: string;
  /** At most this many parallel instances. */
  readonly parallelism?: number;
  /**
   * Rows the commit of one checkpoint may reject (constraint violations found only when they
   * reach the table) before the commit gives up and waits for the table to be fixed (default 1 000).
   */
  readonly maxRejectsPerCommit?: number;
}

/** Checks the shared options without the database; throws a clear error naming the sink (`name`). */
export function validateTableSinkOptions<T>(name: string, options: TableSinkOptions<T>, positive: Readonly<Record<string, number | undefined>> = {}): void {
  if (typeof options.table !== 'string' || options.table.length === 0) throw new Error(`${name}: \`table\` is required`);
  if (options.row !== undefined && options.columns === undefined) throw new Error(`${name}: \`row\` needs \`columns\` (the names of the values it returns)`);
  if (options.columns !== undefined) {
    if (options.columns.length === 0) throw new Error(`${name}: \`columns\` is empty`);
    const dup = options.columns.find((c, i) => options.columns!.indexOf(c) !== i);
    if (dup !== undefined) throw new Error(`${name}: column '${dup}' is listed twice`);
  }
  if (options.key !== undefined) {
    if (options.key.length === 0) throw new Error(`${name}: \`key\` is empty`);
    const missing = options.columns === undefined ? [] : options.key.filter((k) => !options.columns!.includes(k));
    if (missing.length > 0) throw new Error(`${name}: key column(s) ${missing.join(', ')} are not among \`columns\``);
  }
  if (options.op !== undefined && options.key === undefined) throw new Error(`${name}: \`op\` (deletes) needs \`key\``);
  for (const [field, value] of Object.entries({ parallelism: options.parallelism, ...positive })) {
    if (value !== undefined && !(Number.isInteger(value) && value >= 1)) throw new Error(`${name}: \`${field}\` must be a positive integer, got ${value}`);
  }
  if (options.maxRejectsPerCommit !== undefined && !(Number.isInteger(options.maxRejectsPerCommit) && options.maxRejectsPerCommit >= 0)) {
    throw new Error(`${name}: \`maxRejectsPerCommit\` must be an integer ≥ 0, got ${options.maxRejectsPerCommit}`);
  }
}
