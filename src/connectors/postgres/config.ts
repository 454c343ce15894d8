/**
 * Options of the PostgreSQL sink, their defaults and validation, and the SQL names they lead to.
 */

/**
 * How to reach the server, passed through to `pg` (node-postgres): a connection string
 * (`postgres://user:password@host:5432/db?sslmode=require`) or its client options. Without it,
 * `pg` reads the libpq environment variables (`PGHOST`, `PGUSER`, `PGPASSWORD`, …).
 */
export type PostgresConnection = string | PostgresConnectionOptions;

/** Client options, passed to `pg` as given (the common ones are typed; others pass through). */
export interface PostgresConnectionOptions {
  readonly connectionString?: string;
  readonly host?: string;
  readonly port?: number;
  readonly user?: string;
  readonly password?: string | (() => string | Promise<string>);
  readonly database?: string;
  /** TLS: `true`, or Node's TLS options (`ca`, `cert`, `key`, `rejectUnauthorized`, …). */
  readonly ssl?: boolean | import('node:tls').ConnectionOptions;
  /** Milliseconds to wait for a connection (default here 10 000; `pg`'s own default waits forever). */
  readonly connectionTimeoutMillis?: number;
  readonly application_name?: string;
  readonly [option: string]: unknown;
}

/** What a record does to the table: insert or update its row, or delete the row with its key. */
export type PostgresOp = 'upsert' | 'delete';

/** Options of {@link PostgresSink}. */
export interface PostgresSinkOptions<T> {
  /** The server (default: `pg`'s defaults and the `PG*` environment variables). */
  readonly connection?: PostgresConnection;
  /**
   * The target table, `name` or `schema.name`. Names are used as written (quoted), so write them
   * as PostgreSQL stores them: lower case for tables created without quotes.
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
   * Upsert by this key: the table needs a primary key or unique index on exactly these columns.
   * Rows of one checkpoint are applied in the order they were written, so the last write of a key
   * wins. Without a key the sink appends.
   */
  readonly key?: readonly string[];
  /** Marks records as deletes (by key; other columns are ignored). Needs `key`. Default: all upserts. */
  readonly op?: (record: T) => PostgresOp;
  /**
   * Create the table if it does not exist: a `CREATE TABLE` statement, or column types
   * (`{ device: 'text', count: 'bigint' }`, with `key` as the primary key).
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
  /** Rows sent to the server per statement (default 5 000). */
  readonly rowsPerFlush?: number;
  /** Rows buffered in memory before the sink reports backpressure (default 50 000). */
  readonly maxBufferedRows?: number;
  /**
   * Rows the commit of one checkpoint may reject (constraint violations found only when they
   * reach the table) before the commit gives up and waits for the table to be fixed (default 1 000).
   */
  readonly maxRejectsPerCommit?: number;
  /** Backoff between attempts when the server is unreachable: first and longest delay in ms (default 100 and 10 000). */
  readonly retryMs?: { readonly first?: number; readonly max?: number };
}

/** A table name split into schema (undefined: the search path decides) and name. */
export interface TableName {
  readonly schema: string | undefined;
  readonly name: string;
}

/** Parses `name` or `schema.name` (a quoted part may contain dots: `"my.schema".t`). */
export function parseTableName(text: string): TableName {
  const parts: string[] = [];
  let i = 0;
  while (i <= text.length) {
    if (text[i] === '"') {
      let part = '';
      i++;
      for (;;) {
        if (i >= text.length) throw new Error(`table name ${text}: unterminated quote`);
        if (text[i] === '"') {
          if (text[i + 1] === '"') {
            part += '"';
            i += 2;
            continue;
          }
          i++;
          break;
        }
        part += text[i++];
      }
      parts.push(part);
    } else {
      const dot = text.indexOf('.', i);
      const end = dot === -1 ? text.length : dot;
      parts.push(text.slice(i, end));
      i = end;
    }
    if (i >= text.length) break;
    if (text[i] !== '.') throw new Error(`table name ${text}: expected '.' at ${i}`);
    i++;
  }
  if (parts.length > 2 || parts.some((p) => p.length === 0)) throw new Error(`table name '${text}' is not 'name' or 'schema.name'`);
  return parts.length === 2 ? { schema: parts[0], name: parts[1]! } : { schema: undefined, name: parts[0]! };
}

/** An SQL identifier, quoted. */
export function ident(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/** An SQL string literal. */
export function literal(text: string): string {
  return `'${text.replace(/'/g, "''")}'`;
}

/** Checks options that do not need the server; throws a clear error. */
export function validateOptions<T>(options: PostgresSinkOptions<T>): void {
  if (typeof options.table !== 'string' || options.table.length === 0) throw new Error('PostgresSink: `table` is required');
  parseTableName(options.table);
  if (options.row !== undefined && options.columns === undefined) throw new Error('PostgresSink: `row` needs `columns` (the names of the values it returns)');
  if (options.columns !== undefined) {
    if (options.columns.length === 0) throw new Error('PostgresSink: `columns` is empty');
    const dup = options.columns.find((c, i) => options.columns!.indexOf(c) !== i);
    if (dup !== undefined) throw new Error(`PostgresSink: column '${dup}' is listed twice`);
  }
  if (options.key !== undefined) {
    if (options.key.length === 0) throw new Error('PostgresSink: `key` is empty');
    const missing = options.columns === undefined ? [] : options.key.filter((k) => !options.columns!.includes(k));
    if (missing.length > 0) throw new Error(`PostgresSink: key column(s) ${missing.join(', ')} are not among \`columns\``);
  }
  if (options.op !== undefined && options.key === undefined) throw new Error('PostgresSink: `op` (deletes) needs `key`');
  for (const [name, value] of [
    ['rowsPerFlush', options.rowsPerFlush],
    ['maxBufferedRows', options.maxBufferedRows],
    ['parallelism', options.parallelism],
  ] as const) {
    if (value !== undefined && !(Number.isInteger(value) && value >= 1)) throw new Error(`PostgresSink: \`${name}\` must be a positive integer, got ${value}`);
  }
  if (options.maxRejectsPerCommit !== undefined && !(Number.isInteger(options.maxRejectsPerCommit) && options.maxRejectsPerCommit >= 0)) {
    throw new Error(`PostgresSink: \`maxRejectsPerCommit\` must be an integer ≥ 0, got ${options.maxRejectsPerCommit}`);
  }
}

/** `pg` client options for `connection`, with this sink's defaults. */
export function clientConfig(connection: PostgresConnection | undefined, applicationName: string): Record<string, unknown> {
  const given: Record<string, unknown> = typeof connection === 'string' ? { connectionString: connection } : { ...(connection ?? {}) };
  return {
    connectionTimeoutMillis: 10_000,
    keepAlive: true,
    application_name: applicationName.slice(0, 63),
    ...given,
  };
}
