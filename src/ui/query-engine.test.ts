/** The read-only guard of the query endpoint. */
import { describe, expect, it } from 'vitest';
import { readOnlyViolation } from './query-engine.ts';

describe('readOnlyViolation', () => {
  it('lets single reading statements through', () => {
    for (const sql of [
      'SELECT 1',
      '  select * from readings where device = \'x\' ',
      'SELECT 1;',
      'WITH t AS (SELECT 1 AS n) SELECT n FROM t',
      'FROM readings LIMIT 5',
      'DESCRIBE readings',
      'SHOW TABLES',
      'EXPLAIN SELECT 1',
      "SELECT 'DELETE FROM t; DROP TABLE t' AS s",
      'SELECT "insert" FROM t -- delete everything\n',
      'SELECT /* update */ 1',
      'SELECT $$ drop $$',
      'SELECT start, "end" FROM windows',
    ]) {
      expect(readOnlyViolation(sql), sql).toBeNull();
    }
  });

  it('refuses statements that write, several statements, and malformed input', () => {
    const cases: Array<[string, RegExp]> = [
      ['DELETE FROM t', /not DELETE/],
      ['insert into t values (1)', /not INSERT/],
      ['SELECT 1; SELECT 2', /one statement/],
      ['SELECT 1; DROP TABLE t', /one statement/],
      ['WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d', /'DELETE' is not/],
      ['SELECT * INTO backup FROM t', /'INTO' is not/],
      ["COPY t TO 'out.csv'", /not COPY/],
      ["ATTACH 'other.db'", /not ATTACH/],
      ['PRAGMA enable_profiling', /not PRAGMA/],
      ["SET threads = 1", /not SET/],
      ['', /no statement/],
      ['-- nothing', /no statement/],
      ["SELECT 'open", /unterminated/],
      ['SELECT /* open', /unterminated/],
    ];
    for (const [sql, why] of cases) expect(readOnlyViolation(sql), sql).toMatch(why);
  });
});
