/**
 * CSV records (RFC 4180): fields separated by a delimiter, optionally quoted with `"`; a quote
 * inside a quoted field is doubled; quoted fields may span lines.
 */

/** Parses one record. Returns null if a quoted field is still open (the record continues on the next line). */
export function parseCsvRecord(text: string, delimiter: string): string[] | null {
  const fields: string[] = [];
  const n = text.length;
  const d = delimiter.charCodeAt(0);
  let i = 0;
  for (;;) {
    if (i < n && text.charCodeAt(i) === 34) {
      // Quoted field.
      let value = '';
      let from = i + 1;
      for (;;) {
        const q = text.indexOf('"', from);
        if (q < 0) return null;
        value += text.slice(from, q);
        if (text.charCodeAt(q + 1) === 34) {
          value += '"';
          from = q + 2;
          continue;
        }
        i = q + 1;
        break;
      }
      if (i < n && text.charCodeAt(i) !== d) {
        throw new Error(`unexpected character after closing quote at column ${i + 1}`);
      }
      fields.push(value);
    } else {
      let j = text.indexOf(delimiter, i);
      if (j < 0) j = n;
      const raw = text.slice(i, j);
      if (raw.includes('"')) throw new Error(`quote inside an unquoted field at column ${i + 1}`);
      fields.push(raw);
      i = j;
    }
    if (i >= n) return fields;
    i++; // delimiter
    if (i === n) {
      fields.push('');
      return fields;
    }
  }
}

/** Column conversions of a CSV source. */
export type CsvType = 'string' | 'number' | 'integer' | 'boolean';

/** Converts a field; throws with a clear message when it does not fit. */
export function convertCsvField(column: string, raw: string, type: CsvType): string | number | boolean {
  switch (type) {
    case 'string':
      return raw;
    case 'number':
    case 'integer': {
      const v = raw.trim() === '' ? NaN : Number(raw);
      if (!Number.isFinite(v) || (type === 'integer' && !Number.isInteger(v))) {
        throw new Error(`column '${column}': '${raw}' is not ${type === 'integer' ? 'an integer' : 'a number'}`);
      }
      return v;
    }
    case 'boolean': {
      const s = raw.trim().toLowerCase();
      if (s === 'true' || s === '1') return true;
      if (s === 'false' || s === '0') return false;
      throw new Error(`column '${column}': '${raw}' is not a boolean`);
    }
  }
}
