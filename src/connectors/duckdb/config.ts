/**
 * Options of the DuckDB sink and their validation. The table options are those of every table
 * sink ({@link TableSinkOptions}, shared with the PostgreSQL sink).
 */
import { parseTableName } from '../postgres/config.ts';
import { type TableSinkOptions, validateTableSinkOptions } from '../table-sink.ts';

/**
 * Options of {@link DuckDBSink}: the options of every table sink, and the database file.
 *
 * @example
 * const options: DuckDBSinkOptions<{ id: number }> = { path: 'results.duckdb', table: 'ids', create: { id: 'BIGINT' }, config: { threads: '2' } };
 */
export interface DuckDBSinkOptions<T> extends TableSinkOptions<T> {
  /** The database file (created if missing). Every sink and reader of the process shares one instance of it. */
  readonly path: string;
  /** DuckDB settings (`threads`, `memory_limit`, …) used if this sink is the first to open the file. */
  readonly config?: Readonly<Record<string, string>>;
  /**
   * Rows appended to the staging table before they are flushed to it (a DuckDB commit, with its
   * fsync). Flushes also happen at every checkpoint; smaller values spread the work (default 50 000).
   */
  readonly rowsPerFlush?: number;
}

/** Checks options that do not need the database; throws a clear error. */
export function validateDuckDBOptions<T>(options: DuckDBSinkOptions<T>): void {
  if (typeof options.path !== 'string' || options.path.length === 0) throw new Error('DuckDBSink: `path` (the database file) is required');
  validateTableSinkOptions('DuckDBSink', options, { rowsPerFlush: options.rowsPerFlush });
  parseTableName(options.table);
}
