import { describe, expect, it } from 'vitest';
import {
  BloomFilter,
  CountMinSketch,
  HyperLogLog,
  KllSketch,
  SpaceSaving,
  deserializeSketch,
  sketchCodec,
  type Sketch,
} from './index.ts';

function filled(): Sketch[] {
  const cms = CountMinSketch.withError(0.01, 0.01);
  const bloom = BloomFilter.forCapacity(1000, 0.01);
  const hll = HyperLogLog.withError(0.02);
  const kll = KllSketch.withError(0.05);
  const ss = SpaceSaving.withError(0.05);
  for (let i = 0; i < 5000; i++) {
    const item = i % 3 ? `k${i % 97}` : i % 89;
    cms.add(item);
    bloom.add(item);
    hll.add(item);
    kll.add(i % 1013);
    ss.add(item);
  }
  return [cms, bloom, hll, kll, ss];
}

describe('sketch module', () => {
  it('deserializeSketch dispatches on the magic byte', () => {
    for (const s of filled()) {
      const back = deserializeSketch(s.serialize());
      expect(back.constructor).toBe(s.constructor);
      expect((back as { equals(o: unknown): boolean }).equals(s)).toBe(true);
    }
  });

  it('deserializeSketch rejects foreign input clearly', () => {
    expect(() => deserializeSketch(new Uint8Array([0x7b, 0x7d]))).toThrow(/not a serialized Spate sketch/);
    expect(() => deserializeSketch(new Uint8Array([0x53, 0x99, 1, 0]))).toThrow(/unknown sketch type 0x99/);
    expect(() => deserializeSketch(new Uint8Array([]))).toThrow(/not a serialized Spate sketch/);
  });

  it('every sketch type has a distinct magic byte and a versioned header', () => {
    const headers = filled().map((s) => Array.from(s.serialize().subarray(0, 3)));
    expect(new Set(headers.map((h) => h[1])).size).toBe(5);
    for (const h of headers) {
      expect(h[0]).toBe(0x53);
      expect(h[2]).toBe(1);
    }
  });

  it('sketchCodec round-trips as a state codec', () => {
    const codec = sketchCodec(HyperLogLog);
    const hll = new HyperLogLog(10);
    hll.add('a');
    const encoded = codec.encode(hll);
    expect(encoded).toBeInstanceOf(Uint8Array);
    expect(codec.decode(encoded).equals(hll)).toBe(true);
    expect(() => codec.decode('nope')).toThrow(TypeError);
    expect(() => sketchCodec(CountMinSketch).decode(encoded)).toThrow(/wrong magic/);
  });

  it('merge across sketch types is refused', () => {
    const [cms, bloom] = filled() as [CountMinSketch, BloomFilter];
    expect(() => cms.merge(bloom as unknown as CountMinSketch)).toThrow(/CountMinSketch.merge: parameters differ/);
  });
});
