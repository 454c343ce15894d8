/**
 * Options of the PostgreSQL sink, their defaults and validation, and the SQL names they lead to.
 */
import { type RowOp, type TableSinkOptions, validateTableSinkOptions } from '../table-sink.ts';

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

/** What a record does to the table (the {@link RowOp} of every table sink). */
export type PostgresOp = RowOp;

/** Options of {@link PostgresSink}: the options of every table sink, and how to reach the server. */
export interface PostgresSinkOptions<T> extends TableSinkOptions<T> {
  /** The server (default: `pg`'s defaults and the `PG*` environment variables). */
  readonly connection?: PostgresConnection;
  /** Rows sent to the server per statement (default 5 000). */
  readonly rowsPerFlush?: number;
  /** Rows buffered in memory before the sink reports backpressure (default 50 000). */
  readonly maxBufferedRows?: number;
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
  validateTableSinkOptions('PostgresSink', options, { rowsPerFlush: options.rowsPerFlush, maxBufferedRows: options.maxBufferedRows });
  parseTableName(options.table);
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
