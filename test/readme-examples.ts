/**
 * The TypeScript examples of README.md, for the tests that compile and run them
 * (`readme.test.ts` against the sources, `package.test.ts` against the packed package).
 *
 * Every ```ts block is an example and is type-checked. An HTML comment right before a block says
 * what else to do with it:
 * - `<!-- example: run -->`: also run it; if the next fenced block is marked
 *   `<!-- example: output -->`, what it prints must equal that block;
 * - `<!-- example: typecheck -->` (the default): only type-check it, for examples that need files
 *   or run until stopped. Text after the kind (`<!-- example: typecheck (tails a file) -->`) is a
 *   comment.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository's root directory. */
export const REPO = fileURLToPath(new URL('..', import.meta.url));

export interface ReadmeExample {
  /** A file name for the example, from its line: `readme-l57.ts`. */
  readonly file: string;
  /** 1-based line in README.md of the example's first code line. */
  readonly line: number;
  readonly code: string;
  readonly run: boolean;
  /** What the example must print, when the README shows it. */
  readonly output: string | undefined;
}

interface Block {
  readonly lang: string;
  readonly line: number;
  readonly body: string;
  readonly marker: string | undefined;
}

const MARKER = /^<!--\s*example:\s*([a-z-]+)\b.*-->\s*$/;

function blocks(markdown: string): Block[] {
  const lines = markdown.split('\n');
  const found: Block[] = [];
  let marker: string | undefined;
  for (let i = 0; i < lines.length; i++) {
    const text = lines[i]!;
    const m = MARKER.exec(text.trim());
    if (m !== null) {
      marker = m[1];
      continue;
    }
    const fence = /^(```+)\s*([\w-]*)/.exec(text);
    if (fence === null) {
      // A marker applies to the block right after it (blank lines allowed), nothing further.
      if (text.trim() !== '') marker = undefined;
      continue;
    }
    const close = fence[1]!;
    const start = i + 1;
    let end = start;
    while (end < lines.length && !lines[end]!.startsWith(close)) end++;
    if (end >= lines.length) throw new Error(`README.md:${i + 1}: code block is not closed`);
    found.push({ lang: fence[2]!, line: start + 1, body: lines.slice(start, end).join('\n') + '\n', marker });
    marker = undefined;
    i = end;
  }
  return found;
}

/** The examples of a README, in order. Throws on a marker it does not know or misplaced. */
export function readmeExamples(markdown: string = readFileSync(join(REPO, 'README.md'), 'utf8')): ReadmeExample[] {
  const all = blocks(markdown);
  const examples: ReadmeExample[] = [];
  for (let i = 0; i < all.length; i++) {
    const b = all[i]!;
    const isTs = b.lang === 'ts' || b.lang === 'typescript';
    if (b.marker === 'output') {
      const previous = examples.at(-1);
      if (previous === undefined || all[i - 1] === undefined || !previous.run || previous.line !== all[i - 1]!.line) {
        throw new Error(`README.md:${b.line}: an 'output' block must follow an example marked 'run'`);
      }
      examples[examples.length - 1] = { ...previous, output: b.body };
      continue;
    }
    if (!isTs) {
      if (b.marker !== undefined) throw new Error(`README.md:${b.line}: 'example: ${b.marker}' marks a block that is not \`\`\`ts`);
      continue;
    }
    if (b.marker !== undefined && b.marker !== 'run' && b.marker !== 'typecheck') {
      throw new Error(`README.md:${b.line}: unknown marker 'example: ${b.marker}' (run, typecheck or output)`);
    }
    examples.push({ file: `readme-l${b.line}.ts`, line: b.line, code: b.body, run: b.marker === 'run', output: undefined });
  }
  return examples;
}

/**
 * Compares what an example printed with what the README shows. Lines of one step (the text before
 * `> `, as `ConsoleSink` prints it) must come in the same order; how lines of different sinks
 * interleave is up to the runtime's scheduling and is not part of the example's contract.
 */
export function sameOutput(actual: string, expected: string): boolean {
  const byStep = (text: string): string =>
    JSON.stringify(
      Object.entries(
        text
          .trimEnd()
          .split('\n')
          .reduce<Record<string, string[]>>((acc, line) => {
            const step = /^([\w.-]+)> /.exec(line)?.[1] ?? '';
            (acc[step] ??= []).push(line.trimEnd());
            return acc;
          }, {}),
      ).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
    );
  return byStep(actual) === byStep(expected);
}
