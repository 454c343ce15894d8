/** The answer to a SQL query: column names (and types, when known) and rows as objects. */
export interface QueryResult {
  readonly columns: ReadonlyArray<{ readonly name: string; readonly type?: string }>;
  /** Rows keyed by column name, with JSON-safe values. */
  readonly rows: ReadonlyArray<Readonly<Record<string, unknown>>>;
}

/**
 * Something that answers read-only SQL for the dashboard's `/api/query` endpoint — the embedded
 * results store of the job (the DuckDB sink), or any other. The dashboard refuses statements that
 * are not read-only before calling it (see {@link readOnlyViolation}), but an engine should also
 * run queries on a read-only connection, without access to files or the network (DuckDB:
 * `access_mode = 'READ_ONLY'`, `enable_external_access = false`): the check is a guard, not a
 * sandbox.
 *
 * `query` may be called concurrently (one call per HTTP request); a rejection is answered as a
 * 400 with its message.
 *
 * @example
 * const engine: QueryEngine = { query: async (sql) => ({ columns: [{ name: 'n' }], rows: [{ n: 1 }] }) };
 * const dashboard = await serveDashboard(running, { port: 0, queries: engine });
 */
export interface QueryEngine {
  query(sql: string): Promise<QueryResult>;
}

/** Statements that only read. */
const READ_STATEMENTS = new Set(['SELECT', 'WITH', 'FROM', 'VALUES', 'TABLE', 'SHOW', 'DESCRIBE', 'DESC', 'EXPLAIN', 'SUMMARIZE']);

/**
 * Words that make a statement that begins by reading write after all (a writable CTE, SELECT …
 * INTO) or reach outside the query: refused wherever they stand. Statements that write begin
 * with another word and are refused by their first.
 */
const WRITE_WORDS = new Set(['INSERT', 'UPDATE', 'DELETE', 'MERGE', 'UPSERT', 'TRUNCATE', 'CREATE', 'DROP', 'ALTER', 'ATTACH', 'DETACH', 'COPY', 'INTO', 'INSTALL', 'GRANT', 'REVOKE', 'VACUUM']);

/**
 * Why `sql` is not a single read-only statement, or null if it is. Strings, quoted identifiers
 * and comments are skipped; the statement must begin with a reading keyword (SELECT, WITH, FROM,
 * VALUES, TABLE, SHOW, DESCRIBE, EXPLAIN, SUMMARIZE) and contain none of INSERT, UPDATE, DELETE,
 * MERGE, CREATE, DROP, ALTER, ATTACH, COPY, INTO, … anywhere — conservative: a column named like
 * one must be quoted.
 */
export function readOnlyViolation(sql: string): string | null {
  const words: string[] = [];
  let statements = 0;
  let afterSemicolon = false;
  let i = 0;
  const n = sql.length;
  while (i < n) {
    const c = sql[i]!;
    if (c === '-' && sql[i + 1] === '-') {
      while (i < n && sql[i] !== '\n') i++;
    } else if (c === '/' && sql[i + 1] === '*') {
      const end = sql.indexOf('*/', i + 2);
      if (end < 0) return 'unterminated comment';
      i = end + 2;
    } else if (c === "'" || c === '"' || c === '`') {
      // Doubled quotes escape themselves inside SQL strings and identifiers.
      let j = i + 1;
      for (;;) {
        if (j >= n) return 'unterminated quote';
        if (sql[j] === c) {
          if (sql[j + 1] === c) j += 2;
          else break;
        } else j++;
      }
      i = j + 1;
      if (afterSemicolon) return 'only one statement is allowed';
      if (statements === 0) statements = 1;
    } else if (c === '$' && /[A-Za-z_0-9$]/.test(sql[i + 1] ?? '') && /^\$[A-Za-z_0-9]*\$/.test(sql.slice(i))) {
      // Dollar-quoted string ($$…$$ or $tag$…$tag$).
      const tag = /^\$[A-Za-z_0-9]*\$/.exec(sql.slice(i))![0];
      const end = sql.indexOf(tag, i + tag.length);
      if (end < 0) return 'unterminated dollar-quoted string';
      i = end + tag.length;
    } else if (c === ';') {
      afterSemicolon = true;
      i++;
    } else if (/[A-Za-z_]/.test(c)) {
      let j = i + 1;
      while (j < n && /[A-Za-z_0-9$]/.test(sql[j]!)) j++;
      if (afterSemicolon) return 'only one statement is allowed';
      statements = 1;
      words.push(sql.slice(i, j).toUpperCase());
      i = j;
    } else {
      if (!/\s/.test(c) && afterSemicolon) return 'only one statement is allowed';
      if (!/\s/.test(c)) statements = 1;
      i++;
    }
  }
  if (statements === 0 || words.length === 0) return 'no statement';
  const first = words[0]!;
  if (!READ_STATEMENTS.has(first)) return `only read-only queries are allowed (SELECT, WITH, SHOW, DESCRIBE, EXPLAIN…), not ${first}`;
  const bad = words.find((w) => WRITE_WORDS.has(w));
  if (bad !== undefined) return `only read-only queries are allowed: '${bad}' is not`;
  return null;
}
