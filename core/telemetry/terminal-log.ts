// Human-readable log lines when a person reads them, JSON lines otherwise (issue 18 §5): a component
// whose log stream is a terminal writes through pino-pretty (pino's own prettifier, loaded only then);
// a pipe, a file or a container log stays newline-delimited JSON for collectors. AMBIT_LOG_FORMAT=json
// or =pretty overrides the choice.
import { createRequire } from 'node:module';
import { isatty } from 'node:tty';
import type { DestinationStream } from 'pino';

type Prettifier = (o: Record<string, unknown>) => DestinationStream;

/** A pino-pretty stream to `fd` when it should be human-readable, else undefined (keep JSON). */
export function terminalLogStream(fd: 1 | 2): DestinationStream | undefined {
  const format = process.env.AMBIT_LOG_FORMAT;
  if (format === 'json') return undefined;
  if (format !== 'pretty' && !isatty(fd)) return undefined;
  const pretty = createRequire(import.meta.url)('pino-pretty') as Prettifier;
  return pretty({
    destination: fd,
    sync: true,
    colorize: isatty(fd),
    translateTime: 'SYS:HH:MM:ss.l',
    ignore: 'pid,hostname',
  });
}
