// ESLint flat config: neostandard (which also formats) plus the type-aware rules STYLE §2 asks for.
import neostandard from 'neostandard'
import tseslint from 'typescript-eslint'

export default [
  ...neostandard({ ts: true, ignores: ['**/dist/**', '**/node_modules/**', 'coverage/**', '.bench/**', 'test/interop/bin/**'] }),
  {
    files: ['**/*.ts'],
    languageOptions: {
      parser: tseslint.parser,
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    plugins: { '@typescript-eslint': tseslint.plugin },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/await-thenable': 'error',
      '@typescript-eslint/return-await': ['error', 'in-try-catch'],
      '@typescript-eslint/only-throw-error': 'error',
      // A deliberate `default:` (e.g. every other auth code is "invalid token") counts as handled.
      '@typescript-eslint/switch-exhaustiveness-check': ['error', { considerDefaultExhaustiveForUnions: true }],
      '@typescript-eslint/consistent-type-imports': 'error',
      '@typescript-eslint/no-explicit-any': 'error',
      'n/prefer-node-protocol': 'error',
      'no-console': 'error',
      'no-void': ['error', { allowAsStatement: true }],
    },
  },
  {
    files: ['packages/cli/src/output.ts', 'bench/**', 'scripts/**'],
    rules: { 'no-console': 'off' },
  },
]
