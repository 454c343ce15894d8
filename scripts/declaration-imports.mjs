#!/usr/bin/env node
// Rewrites relative `.ts` module specifiers in emitted declaration files to `.js`.
//
// The sources import each other as `./x.ts` and the build uses `rewriteRelativeImportExtensions`,
// which rewrites the emitted JavaScript but not the declarations (TypeScript issue #61037): tsc
// emits `export … from './x.ts'` and `import("./x.ts").T` into `.d.ts` files. TypeScript accepts
// that, but other tools reading the declarations (editors, API extractors, bundlers of types)
// look for a `.ts` file that is not in the package. The specifiers are found with TypeScript's
// parser, not a regular expression, so that comments and string contents stay untouched; `.ts`
// and `.js` have the same length, so declaration maps stay valid. Every rewritten specifier must
// name a declaration file that exists, or the build fails.
//
// Usage: declaration-imports.mjs DIR (silent on success; VERBOSE=1 prints a count)
import { readdirSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import ts from 'typescript';

const root = resolve(process.argv[2] ?? 'dist');
const EXTENSIONS = { '.ts': '.js', '.mts': '.mjs', '.cts': '.cjs' };
const DECLARATION_OF = { '.js': '.d.ts', '.mjs': '.d.mts', '.cjs': '.d.cts' };

/** The string-literal module specifiers of a declaration file. */
function specifiers(file) {
  const found = [];
  const visit = (node) => {
    let literal;
    if ((ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) && node.moduleSpecifier) literal = node.moduleSpecifier;
    else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument)) literal = node.argument.literal;
    else if (ts.isExternalModuleReference(node)) literal = node.expression;
    else if (ts.isModuleDeclaration(node) && ts.isStringLiteral(node.name)) literal = node.name;
    if (literal !== undefined && ts.isStringLiteral(literal)) found.push(literal);
    ts.forEachChild(node, visit);
  };
  visit(file);
  return found;
}

function* declarationFiles(dir) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) yield* declarationFiles(path);
    else if (/\.d\.[cm]?ts$/.test(entry.name)) yield path;
  }
}

let files = 0;
let rewritten = 0;
const problems = [];
for (const path of declarationFiles(root)) {
  const text = readFileSync(path, 'utf8');
  const file = ts.createSourceFile(path, text, ts.ScriptTarget.Latest, false);
  let out = text;
  for (const literal of specifiers(file)) {
    const spec = literal.text;
    if (!spec.startsWith('./') && !spec.startsWith('../')) continue;
    const match = /(\.d)?(\.[cm]?ts)$/.exec(spec);
    let target = spec;
    if (match !== null && match[1] === undefined) {
      target = spec.slice(0, -match[2].length) + EXTENSIONS[match[2]];
      // Same length, so positions of later specifiers do not move.
      const start = literal.getStart(file) + 1;
      out = out.slice(0, start) + target + out.slice(start + spec.length);
      rewritten++;
    }
    const ext = /\.[cm]?js$/.exec(target)?.[0];
    const declaration = ext === undefined ? undefined : join(dirname(path), target.slice(0, -ext.length) + DECLARATION_OF[ext]);
    if (declaration === undefined || !existsSync(declaration)) {
      problems.push(`${path}: '${spec}' does not name an emitted declaration file`);
    }
  }
  if (out !== text) {
    writeFileSync(path, out);
    files++;
  }
}
if (problems.length > 0) {
  console.error(problems.join('\n'));
  process.exit(1);
}
if (process.env.VERBOSE) console.error(`declaration-imports: ${rewritten} specifiers rewritten to .js in ${files} files under ${root}`);
