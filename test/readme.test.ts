/**
 * The README's TypeScript examples, type-checked against the sources with a user's compiler
 * settings (strict, NodeNext, exactOptionalPropertyTypes), and the runnable ones run: what they
 * print must be what the README says they print. `package.test.ts` does the same against the
 * packed package.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import ts from 'typescript';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readmeExamples, REPO, sameOutput } from './readme-examples.ts';

const run = promisify(execFile);
const examples = readmeExamples();
const TSX = createRequire(import.meta.url).resolve('tsx/cli');

let dir: string;
let tsconfig: string;
const diagnostics = new Map<string, string[]>();

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'spate-readme-'));
  // The examples import 'spate', 'spate/testing' and 'spate/sketch' as a user would; paths map them
  // to the sources (tsx honours the same mapping when running them).
  const compilerOptions = {
    target: 'ES2022',
    module: 'NodeNext',
    moduleResolution: 'NodeNext',
    strict: true,
    exactOptionalPropertyTypes: true,
    noEmit: true,
    // The sources import each other with .ts extensions.
    allowImportingTsExtensions: true,
    skipLibCheck: true,
    types: ['node'],
    typeRoots: [join(REPO, 'node_modules', '@types')],
    paths: {
      spate: [join(REPO, 'src', 'index.ts')],
      'spate/testing': [join(REPO, 'src', 'testing', 'index.ts')],
      'spate/sketch': [join(REPO, 'src', 'sketch', 'index.ts')],
    },
  };
  tsconfig = join(dir, 'tsconfig.json');
  writeFileSync(tsconfig, JSON.stringify({ compilerOptions, files: examples.map((e) => e.file) }, null, 2));
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'readme-examples', private: true, type: 'module' }));
  for (const e of examples) writeFileSync(join(dir, e.file), e.code);

  const config = ts.getParsedCommandLineOfConfigFile(tsconfig, {}, {
    ...ts.sys,
    onUnRecoverableConfigFileDiagnostic: (d) => {
      throw new Error(ts.flattenDiagnosticMessageText(d.messageText, '\n'));
    },
  })!;
  expect(config.errors.map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n'))).toEqual([]);
  const program = ts.createProgram({ rootNames: config.fileNames, options: config.options });
  const global = [...program.getOptionsDiagnostics(), ...program.getGlobalDiagnostics()];
  expect(global.map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n'))).toEqual([]);
  for (const e of examples) {
    const file = program.getSourceFile(join(dir, e.file))!;
    const found = [...program.getSyntacticDiagnostics(file), ...program.getSemanticDiagnostics(file)];
    diagnostics.set(
      e.file,
      found.map((d) => {
        // Report the README line, not the temporary file's.
        const { line, character } = file.getLineAndCharacterOfPosition(d.start ?? 0);
        return `README.md:${e.line + line}:${character + 1}: TS${d.code}: ${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`;
      }),
    );
  }
}, 120_000);

afterAll(() => {
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
});

describe('README examples', () => {
  it('has the examples the README is known to have', () => {
    expect(examples.length).toBeGreaterThanOrEqual(4);
    expect(examples.filter((e) => e.run).length).toBeGreaterThanOrEqual(3);
    // The keyed-state example is the one whose behaviour the README spells out.
    expect(examples.some((e) => e.run && e.code.includes('deleteEventTimer') && e.output !== undefined)).toBe(true);
  });

  for (const e of examples) {
    it(`README.md:${e.line} type-checks`, () => {
      expect(diagnostics.get(e.file)).toEqual([]);
    });

    if (e.run) {
      it(`README.md:${e.line} runs${e.output === undefined ? '' : ' and prints what the README shows'}`, async () => {
        const { stdout } = await run(process.execPath, [TSX, '--tsconfig', tsconfig, join(dir, e.file)], {
          cwd: dir,
          timeout: 60_000,
        });
        if (e.output !== undefined && !sameOutput(stdout, e.output)) expect(stdout).toBe(e.output);
      }, 90_000);
    }
  }
});
