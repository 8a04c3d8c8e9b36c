// Lint: typescript-eslint's recommended rules, and the direction of dependencies
// (cli -> commands -> compose -> adapters -> engine ports) enforced as import rules.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const ADAPTERS = ['source', 'state', 'rules', 'sink', 'http', 'generator'];

export default tseslint.config(
  { ignores: ['dist/', 'dist-bench/', 'node_modules/', 'test-artifacts/', 'bench/results/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  {
    // The engine owns its ports: it imports no adapter, no composition and no driver.
    files: ['src/engine/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: [...ADAPTERS.map((a) => `../${a}/*`), '../commands/*', '../compose.js', '../cli.js', '../config.js', '../lifecycle.js'],
              message: 'the engine imports only its own ports, plain types and time',
            },
            // No package at all (kafkajs, pg, DuckDB, Fastify, ...): only Node's own modules.
            { regex: '^(?![.]|node:)', message: 'the engine talks to drivers only through its ports (src/engine/ports.ts)' },
          ],
        },
      ],
    },
  },
  {
    // Adapters implement the ports; they never reach up into the composition or the engine's implementation.
    files: ADAPTERS.map((a) => `src/${a}/**/*.ts`),
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['../commands/*', '../compose.js', '../cli.js', '../lifecycle.js', '../engine/engine.js'],
              message: 'adapters depend on the engine ports, not on the composition',
            },
          ],
        },
      ],
    },
  },
);
