/**
 * Fast, well-mixed, deterministic 32-bit hashing of strings and numbers.
 *
 * Used wherever Spate must agree on a hash across processes and restarts: key groups (state
 * placement), exchanges, and sketches. The string hash is MurmurHash3 (x86, 32-bit) over UTF-16
 * code units, two units per block; numbers that are int32 are mixed directly, other numbers
 * through the two 32-bit halves of their IEEE-754 bits. Equal values always hash equally
 * (`5` and `5.0` are the same number in JavaScript), and `-0` hashes like `0`.
 */

const f64 = new Float64Array(1);
const u32 = new Uint32Array(f64.buffer);

/** MurmurHash3's 32-bit finalizer: full avalanche of a 32-bit integer. */
export function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** MurmurHash3 x86_32 over the UTF-16 code units of `s`. Returns an unsigned 32-bit integer. */
export function hashString(s: string, seed = 0): number {
  let h = seed | 0;
  const n = s.length;
  const pairs = n & ~1;
  let i = 0;
  for (; i < pairs; i += 2) {
    let k = (s.charCodeAt(i) | (s.charCodeAt(i + 1) << 16)) | 0;
    k = Math.imul(k, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, 0x1b873593);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  if (i < n) {
    let k = s.charCodeAt(i);
    k = Math.imul(k, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, 0x1b873593);
    h ^= k;
  }
  h ^= n * 2;
  return fmix32(h);
}

/** Hash of a number; int32 values take a fast path. Returns an unsigned 32-bit integer. */
export function hashNumber(x: number, seed = 0): number {
  if ((x | 0) === x) return fmix32((Math.imul(x, 0x9e3779b1) ^ seed) + 0x7f4a7c15);
  f64[0] = x === 0 ? 0 : x; // -0 → 0
  const lo = u32[0]!;
  const hi = u32[1]!;
  return fmix32(Math.imul(lo ^ seed, 0x9e3779b1) ^ fmix32(hi + 0x632be5ab));
}

/** Hash of a string or number (the item types sketches and keys accept). */
export function hash32(item: string | number, seed = 0): number {
  return typeof item === 'number' ? hashNumber(item, seed) : hashString(item, seed);
}

/**
 * A 64-bit hash of `item` as two well-mixed 32-bit halves, written to `out[0]` and `out[1]`
 * without allocating. Sketches hash each item once with this and derive every further index from
 * the pair (double hashing), so the two halves must be independent: the string hash runs two
 * MurmurHash3 lanes with different constants (those of MurmurHash3 x86_128's first two lanes)
 * over the same blocks in one pass and cross-mixes them at the end, like x86_128; numbers mix
 * their bits through two different multipliers. A collision of the full 64 bits between two
 * distinct random items has probability about 2⁻⁶⁴ (int32 numbers never collide: the first half
 * alone is a bijection of them before cross-mixing, and cross-mixing is invertible).
 *
 * Not a cryptographic hash: adversarial inputs can be built to collide (as for every
 * MurmurHash variant). Values are stable across processes, platforms and releases. Dispatches to
 * {@link hashPairNumber} or {@link hashPairString}; the two are separate functions so that a call
 * site fed both strings and numbers stays fast for each.
 *
 * @example
 * ```ts
 * const h = new Uint32Array(2);
 * hashPair('user:42', h, seed);
 * const [h1, h2] = h; // probe i of a Bloom filter: (h1 + i·h2) mod 2³²
 * ```
 */
export function hashPair(item: string | number, out: Uint32Array, seed = 0): void {
  if (typeof item === 'number') hashPairNumber(item, out, seed);
  else hashPairString(item, out, seed);
}

/** {@link hashPair} of a number. */
export function hashPairNumber(x: number, out: Uint32Array, seed = 0): void {
  let h1: number;
  let h2: number;
  if ((x | 0) === x) {
    h1 = fmix32((Math.imul(x, 0x9e3779b1) ^ seed) + 0x7f4a7c15);
    h2 = fmix32(Math.imul(x ^ 0x38b34ae5, 0x85ebca77) + (seed ^ 0x165667b1));
  } else {
    f64[0] = x === x ? x : NaN; // one bit pattern for every NaN (-0 took the int path)
    const lo = u32[0]!;
    const hi = u32[1]!;
    h1 = fmix32(Math.imul(lo ^ seed, 0x9e3779b1) ^ fmix32(hi + 0x632be5ab));
    h2 = fmix32(Math.imul(hi ^ seed, 0xc2b2ae3d) ^ fmix32(lo + 0x27d4eb2f));
  }
  // Cross-mix the lanes (as MurmurHash3 x86_128 does) so each half depends on both.
  h1 = (h1 + h2) | 0;
  out[0] = h1;
  out[1] = h2 + h1;
}

/** {@link hashPair} of a string. */
export function hashPairString(s: string, out: Uint32Array, seed = 0): void {
  let h1 = seed | 0;
  let h2 = (seed ^ 0x9e3779b9) | 0;
  const n = s.length;
  const pairs = n & ~1;
  let i = 0;
  for (; i < pairs; i += 2) {
    const raw = s.charCodeAt(i) | (s.charCodeAt(i + 1) << 16);
    let k1 = Math.imul(raw, 0xcc9e2d51);
    k1 = (k1 << 15) | (k1 >>> 17);
    h1 ^= Math.imul(k1, 0x1b873593);
    h1 = (h1 << 13) | (h1 >>> 19);
    h1 = (Math.imul(h1, 5) + 0xe6546b64) | 0;
    let k2 = Math.imul(raw, 0xab0e9789);
    k2 = (k2 << 16) | (k2 >>> 16);
    h2 ^= Math.imul(k2, 0x38b34ae5);
    h2 = (h2 << 17) | (h2 >>> 15);
    h2 = (Math.imul(h2, 5) + 0x0bcaa747) | 0;
  }
  if (i < n) {
    const raw = s.charCodeAt(i);
    let k1 = Math.imul(raw, 0xcc9e2d51);
    k1 = (k1 << 15) | (k1 >>> 17);
    h1 ^= Math.imul(k1, 0x1b873593);
    let k2 = Math.imul(raw, 0xab0e9789);
    k2 = (k2 << 16) | (k2 >>> 16);
    h2 ^= Math.imul(k2, 0x38b34ae5);
  }
  h1 = fmix32(h1 ^ (n * 2));
  h2 = fmix32(h2 ^ (n * 2));
  // Cross-mix the lanes (as MurmurHash3 x86_128 does) so each half depends on both.
  h1 = (h1 + h2) | 0;
  out[0] = h1;
  out[1] = h2 + h1;
}
