import { appendFileSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Pipeline } from '../../api/pipeline.ts';
import { CsvSource } from './csv-source.ts';
import { parseCsvRecord } from './csv.ts';
import { JsonlSink } from './jsonl-sink.ts';
import { JsonlSource } from './jsonl-source.ts';

const dir = mkdtempSync(join(tmpdir(), 'spate-file-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
function file(content: string | Buffer): string {
  const path = join(dir, `f${n++}`);
  writeFileSync(path, content);
  return path;
}

async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('JsonlSource', () => {
  it('reads one value per line, skipping blank lines, with or without a final newline and with CRLF', async () => {
    const p = new Pipeline();
    const out = p.source(new JsonlSource<{ a: number }>(file('{"a":1}\r\n\n  \n{"a":2}\n{"a":3}'))).collect();
    await p.run();
    expect(out.values).toEqual([{ a: 1 }, { a: 2 }, { a: 3 }]);
  });

  it('dead-letters malformed JSON, invalid UTF-8, over-long lines and rejected values, with line numbers', async () => {
    const bad = Buffer.concat([
      Buffer.from('{"a":1}\n{"a":\n'),
      Buffer.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xff, 0xfe, 0x22, 0x7d, 0x0a]), // {"a":"\xff\xfe"}
      Buffer.from(`{"a":"${'x'.repeat(200)}"}\n{"a":"text"}\n{"a":4}\n`),
    ]);
    const p = new Pipeline();
    const out = p
      .source(
        new JsonlSource<{ a: number }>(file(bad), {
          maxLineBytes: 100,
          parse: (v) => {
            const a = (v as { a?: unknown }).a;
            if (typeof a !== 'number') throw new Error(`field a must be a number, got ${typeof a}`);
            return { a };
          },
        }),
        { id: 'in' },
      )
      .collect();
    const dead = p.deadLetters().collect();
    const result = await p.run();
    expect(out.values).toEqual([{ a: 1 }, { a: 4 }]);
    expect(dead.values.map((d) => [(d.record as { line: number }).line, d.step])).toEqual([
      [2, 'in'],
      [3, 'in'],
      [4, 'in'],
      [5, 'in'],
    ]);
    expect(dead.values[0]!.error).toMatch(/JSON/);
    expect(dead.values[1]!.error).toBe('invalid UTF-8');
    expect(dead.values[2]!.error).toBe('line longer than 100 bytes');
    expect(dead.values[3]!.error).toBe('field a must be a number, got string');
    expect(result.metrics.find((m) => m.step === 'in')!.deadLetters).toBe(4);
  });

  it('reads a file larger than one read chunk', async () => {
    const lines = Array.from({ length: 60_000 }, (_, i) => JSON.stringify({ i, pad: 'é'.repeat(i % 7) }));
    const p = new Pipeline();
    const out = p.source(new JsonlSource<{ i: number }>(file(lines.join('\n') + '\n'))).collect();
    await p.run();
    expect(out.values.map((v) => v.i)).toEqual(lines.map((_, i) => i));
  });

  it('tails a growing file, and a restored job resumes after the last line read', async () => {
    const path = file('');
    const p = new Pipeline();
    const out = p.source(() => new JsonlSource<number>(path, { tail: true, pollInterval: 5 }), { id: 'tail' }).collect();
    const job = p.start();
    appendFileSync(path, '1\n2\n');
    await until(() => out.values.length === 2);
    appendFileSync(path, '3\n4'); // no newline yet: 4 is incomplete
    await until(() => out.values.length === 3);
    const snapshot = await job.snapshot();
    await job.stop();
    expect(out.values).toEqual([1, 2, 3]);

    appendFileSync(path, '\n5\n');
    const p2 = new Pipeline();
    const out2 = p2.source(() => new JsonlSource<number>(path, { tail: true, pollInterval: 5 }), { id: 'tail' }).collect();
    const job2 = p2.start({ restoreFrom: snapshot });
    await until(() => out2.values.length === 2);
    await job2.stop();
    expect(out2.values).toEqual([4, 5]);
  });
});

describe('CSV', () => {
  it('parses RFC 4180 records', () => {
    expect(parseCsvRecord('a,b,c', ',')).toEqual(['a', 'b', 'c']);
    expect(parseCsvRecord('"a,1","say ""hi""",', ',')).toEqual(['a,1', 'say "hi"', '']);
    expect(parseCsvRecord('"open', ',')).toBeNull();
    expect(parseCsvRecord('', ',')).toEqual(['']);
    expect(() => parseCsvRecord('"a"b', ',')).toThrow(/after closing quote/);
    expect(() => parseCsvRecord('a"b', ',')).toThrow(/quote inside an unquoted field/);
  });

  it('reads rows with a header, quoting, multi-line fields and typed columns', async () => {
    const text = 'id,name,price,ok\n1,"Smith, J",9.5,true\n2,"two\nlines",10,0\n3,x,abc,true\n4,y,1\n5,"z",2,false\n';
    const p = new Pipeline();
    const out = p
      .source(new CsvSource(file(text), { types: { id: 'integer', price: 'number', ok: 'boolean' } }), { id: 'csv' })
      .collect();
    const dead = p.deadLetters().collect();
    await p.run();
    expect(out.values).toEqual([
      { id: 1, name: 'Smith, J', price: 9.5, ok: true },
      { id: 2, name: 'two\nlines', price: 10, ok: false },
      { id: 5, name: 'z', price: 2, ok: false },
    ]);
    expect(dead.values.map((d) => [(d.record as { line: number }).line, d.error])).toEqual([
      [5, "column 'price': 'abc' is not a number"],
      [6, 'expected 4 fields, got 3'],
    ]);
  });

  it('takes column names from options, a delimiter, and reports an unterminated quote at the end', async () => {
    const p = new Pipeline();
    const out = p
      .source(new CsvSource<{ k: string; v: number }>(file('a;1\nb;2\n"c;3\n'), { header: ['k', 'v'], delimiter: ';', types: { v: 'number' } }))
      .collect();
    const dead = p.deadLetters().collect();
    await p.run();
    expect(out.values).toEqual([
      { k: 'a', v: 1 },
      { k: 'b', v: 2 },
    ]);
    expect(dead.values.map((d) => d.error)).toEqual(['unterminated quoted field at end of file']);
  });
});

describe('byte-order mark and headerless CSV', () => {
  it('skips a UTF-8 BOM at the start of the file', async () => {
    const bom = Buffer.from([0xef, 0xbb, 0xbf]);
    const p = new Pipeline();
    const csv = p.source(new CsvSource(file(Buffer.concat([bom, Buffer.from('id,v\n1,2\n')])))).collect();
    const jsonl = p.source(new JsonlSource(file(Buffer.concat([bom, Buffer.from('{"a":1}\n')])))).collect();
    await p.run();
    expect(csv.values).toEqual([{ id: '1', v: '2' }]);
    expect(jsonl.values).toEqual([{ a: 1 }]);
  });

  it('names columns by position with header: false', async () => {
    const p = new Pipeline();
    const out = p.source(new CsvSource(file('a,1\nb,2\n'), { header: false, types: { '1': 'integer' } })).collect();
    await p.run();
    expect(out.values).toEqual([
      { '0': 'a', '1': 1 },
      { '0': 'b', '1': 2 },
    ]);
  });
});

describe('JsonlSink', () => {
  it('writes one JSON line per record and appends when asked', async () => {
    const path = join(dir, 'out.jsonl');
    for (const append of [false, true]) {
      const p = new Pipeline();
      p.fromArray([{ a: 1 }, { a: 2 }]).sink(new JsonlSink(path, { append }));
      await p.run();
    }
    expect(readFileSync(path, 'utf8')).toBe('{"a":1}\n{"a":2}\n{"a":1}\n{"a":2}\n');
  });
});

describe('tailing across rotation', () => {
  it('follows the path to a new file after rename-and-create rotation', async () => {
    const path = file('1\n');
    const p = new Pipeline();
    const out = p.source(() => new JsonlSource<number>(path, { tail: true, pollInterval: 5 })).collect();
    const job = p.start();
    await until(() => out.values.length === 1);
    appendFileSync(path, '2\n');
    renameSync(path, `${path}.1`);
    writeFileSync(path, '3\n');
    await until(() => out.values.length === 3);
    appendFileSync(path, '4\n');
    await until(() => out.values.length === 4);
    await job.stop();
    expect(out.values).toEqual([1, 2, 3, 4]);
  });
});
