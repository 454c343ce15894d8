/**
 * A canonical text for a value, for comparing outputs as multisets: object keys sorted, `Map`
 * and `Set` entries sorted, typed arrays as arrays, and the values JSON cannot say (`undefined`,
 * `NaN`, `±Infinity`, `-0`, BigInt) spelled out, so two values get the same text exactly when
 * they are structurally equal.
 *
 * @example
 * canonicalKey({ b: 1, a: [NaN, undefined] }) === canonicalKey({ a: [NaN, undefined], b: 1 }); // true
 */
export function canonicalKey(value: unknown): string {
  return JSON.stringify(normalize(value, new Set()));
}

function normalize(value: unknown, seen: Set<object>): unknown {
  switch (typeof value) {
    case 'undefined':
      return { $: 'undefined' };
    case 'number':
      if (Number.isNaN(value)) return { $: 'NaN' };
      if (value === Infinity) return { $: 'Infinity' };
      if (value === -Infinity) return { $: '-Infinity' };
      if (Object.is(value, -0)) return { $: '-0' };
      return value;
    case 'bigint':
      return { $: `${value}n` };
    case 'function':
    case 'symbol':
      return { $: String(value) };
    case 'object': {
      if (value === null) return null;
      if (seen.has(value)) return { $: 'cycle' };
      seen.add(value);
      try {
        if (ArrayBuffer.isView(value)) return { $: value.constructor.name, v: Array.from(value as unknown as ArrayLike<number>, (x) => normalize(x, seen)) };
        if (Array.isArray(value)) return value.map((v) => normalize(v, seen));
        if (value instanceof Map) {
          const entries = [...value].map(([k, v]) => [normalize(k, seen), normalize(v, seen)] as const);
          return { $: 'Map', v: entries.map((e) => JSON.stringify(e)).sort() };
        }
        if (value instanceof Set) return { $: 'Set', v: [...value].map((v) => JSON.stringify(normalize(v, seen))).sort() };
        if (value instanceof Date) return { $: 'Date', v: value.getTime() };
        const out: Record<string, unknown> = {};
        for (const k of Object.keys(value).sort()) out[k] = normalize((value as Record<string, unknown>)[k], seen);
        return out;
      } finally {
        seen.delete(value);
      }
    }
    default:
      return value;
  }
}

/**
 * How two outputs differ as multisets (see {@link diffMultisets}).
 *
 * @example
 * const d: MultisetDiff<number> = diffMultisets([1, 2], [2, 2]);
 * d.missing; // [{ item: 1, count: 1 }]
 */
export interface MultisetDiff<T> {
  /** Whether they are equal as multisets. */
  readonly equal: boolean;
  /** Items of `expected` that `actual` lacks, with how many copies are missing. */
  readonly missing: ReadonlyArray<{ readonly item: T; readonly count: number }>;
  /** Items of `actual` beyond `expected` (duplicates, or items that should not be there), with how many extra copies. */
  readonly extra: ReadonlyArray<{ readonly item: T; readonly count: number }>;
}

/**
 * Compares two lists as multisets (order ignored, copies counted), by {@link canonicalKey} or a
 * key function of your own.
 *
 * @example
 * const d = diffMultisets([1, 2, 2, 3], [3, 2, 1, 1]);
 * d.equal;   // false
 * d.missing; // [{ item: 2, count: 1 }]
 * d.extra;   // [{ item: 1, count: 1 }]
 */
export function diffMultisets<T>(expected: readonly T[], actual: readonly T[], key: (item: T) => string = canonicalKey): MultisetDiff<T> {
  const counts = new Map<string, { item: T; count: number }>();
  for (const item of expected) {
    const k = key(item);
    const e = counts.get(k);
    if (e === undefined) counts.set(k, { item, count: 1 });
    else e.count++;
  }
  const extraCounts = new Map<string, { item: T; count: number }>();
  for (const item of actual) {
    const k = key(item);
    const e = counts.get(k);
    if (e !== undefined && e.count > 0) {
      e.count--;
      continue;
    }
    const x = extraCounts.get(k);
    if (x === undefined) extraCounts.set(k, { item, count: 1 });
    else x.count++;
  }
  const missing = [...counts.values()].filter((e) => e.count > 0);
  const extra = [...extraCounts.values()];
  return { equal: missing.length === 0 && extra.length === 0, missing, extra };
}
