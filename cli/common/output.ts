// The CLI's shared conventions (issue 18 §5): one `-o table|json|yaml` option for every command that
// prints data, one error type for usage mistakes (exit 2) versus failures or findings (exit 1), and one
// table layout. kubectl and istioctl use the same three output names and exit codes 0/1/2 in this sense.
import { Option } from 'commander';
import { stringify } from 'yaml';

export const OUTPUT_FORMATS = ['table', 'json', 'yaml'] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

/** Exit codes: 0 ok, 1 a failure or a finding (a check failed, an object is invalid), 2 bad usage. */
export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

/** A mistake in how the command was called (unknown value, missing file): exits 2. */
export class UsageError extends Error {
  readonly code = 'CLI_USAGE';
  readonly exitCode = EXIT_USAGE;
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** The command ran but failed or found something wrong (unreachable proxy, invalid object): exits 1. */
export class CommandFailure extends Error {
  readonly code: string;
  readonly exitCode = EXIT_FAILURE;
  constructor(code: string, message: string) {
    super(message);
    this.code = code;
    this.name = 'CommandFailure';
  }
}

/** `-o, --output`, validated by commander (a wrong value is a usage error). */
export function outputOption(defaultFormat: OutputFormat = 'table'): Option {
  return new Option('-o, --output <format>', 'output format').choices(OUTPUT_FORMATS).default(defaultFormat);
}

/** Machine formats of any value; `table` is the caller's own rendering. */
export function formatData(format: OutputFormat, value: unknown, renderTable: () => string): string {
  if (format === 'json') return `${JSON.stringify(value, null, 2)}\n`;
  if (format === 'yaml') return stringify(value);
  const t = renderTable();
  return t.endsWith('\n') ? t : `${t}\n`;
}

/** Left-aligned columns separated by three spaces, like istioctl's and kubectl's tabwriter output. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd((widths[i] ?? 0) + 3)))
      .join('')
      .trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}
