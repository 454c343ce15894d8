/** Types for `parse-prometheus-text-format` (it ships none), as far as the tests use it. */
declare module 'parse-prometheus-text-format' {
  interface ParsedFamily {
    readonly name: string;
    readonly help: string;
    readonly type: 'COUNTER' | 'GAUGE' | 'HISTOGRAM' | 'SUMMARY' | 'UNTYPED';
    readonly metrics: ReadonlyArray<{ readonly value: string; readonly labels?: Readonly<Record<string, string>> }>;
  }
  export default function parsePrometheusTextFormat(text: string): ParsedFamily[];
}
