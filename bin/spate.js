#!/usr/bin/env node
// The spate command.
//
// In a checkout with the dev dependencies installed (tsx in this package's own node_modules), it
// runs the TypeScript sources directly, so `npm start` needs no build step and never runs a stale
// dist/ left by an earlier build or `npm pack`. An installed package never has that: tsx is a dev
// dependency, so npm does not install it under the package, and the command runs the compiled
// dist/ with plain Node (a tsx the user's project happens to have is not looked at).
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const source = join(root, 'src', 'cli', 'main.ts');
let entry = join(root, 'dist', 'cli', 'main.js');
if (existsSync(source) && existsSync(join(root, 'node_modules', 'tsx'))) {
  const { register } = await import('tsx/esm/api');
  register();
  entry = source;
} else if (!existsSync(entry)) {
  console.error(`spate: ${entry} is missing: run \`npm run build\`, or \`npm install\` the dev dependencies to run the sources`);
  process.exit(1);
}
const { main } = await import(pathToFileURL(entry).href);
process.exitCode = await main(process.argv.slice(2));
