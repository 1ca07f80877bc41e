// `ambit completion bash|zsh|fish`: a shell completion script generated from the command tree itself
// (so it never lists a command that does not exist). Usage, as kubectl's:
//   source <(ambit completion bash)      ambit completion fish | source
// zsh loads the bash function through bashcompinit (zsh's documented bridge for bash completions).
import type { Command } from 'commander';
import { UsageError } from './common/output.js';

interface Node {
  path: string[];
  words: string[];
  help: Map<string, string>;
}

function visible(c: Command): Command[] {
  return c.commands.filter((s) => !(s as unknown as { _hidden?: boolean })._hidden);
}

function nodes(root: Command): Node[] {
  const out: Node[] = [];
  const walk = (c: Command, path: string[]): void => {
    const help = new Map<string, string>();
    for (const s of visible(c)) help.set(s.name(), s.description().split('\n')[0] ?? '');
    for (const o of c.options) if (o.long) help.set(o.long, o.description);
    if (path.length === 0) help.set('--help', 'show help');
    out.push({ path, words: [...help.keys()], help });
    for (const s of visible(c)) walk(s, [...path, s.name()]);
  };
  walk(root, []);
  return out;
}

export function bashCompletion(root: Command): string {
  const cases = nodes(root)
    .map((n) => `    "${n.path.join(' ')}") words="${n.words.join(' ')}" ;;`)
    .join('\n');
  return `# ambit bash completion: source <(ambit completion bash)
_ambit() {
  local cur path="" w i words
  cur="\${COMP_WORDS[COMP_CWORD]}"
  for ((i = 1; i < COMP_CWORD; i++)); do
    w="\${COMP_WORDS[i]}"
    [[ "$w" == -* ]] && continue
    if [[ -z "$path" ]]; then path="$w"; else path="$path $w"; fi
  done
  case "$path" in
${cases}
    *) words="" ;;
  esac
  COMPREPLY=( $(compgen -W "$words" -- "$cur") )
}
complete -o default -F _ambit ambit
`;
}

export function zshCompletion(root: Command): string {
  return `#compdef ambit
# ambit zsh completion: source <(ambit completion zsh)
autoload -U +X bashcompinit && bashcompinit
${bashCompletion(root).split('\n').slice(1).join('\n')}`;
}

export function fishCompletion(root: Command): string {
  const q = (s: string) => `'${s.replaceAll("'", "\\'")}'`;
  const lines = ['# ambit fish completion: ambit completion fish | source', 'complete -c ambit -f'];
  for (const n of nodes(root)) {
    const cond =
      n.path.length === 0
        ? '__fish_use_subcommand'
        : `__fish_seen_subcommand_from ${n.path[n.path.length - 1]}`;
    for (const [w, d] of n.help) {
      if (w.startsWith('--')) lines.push(`complete -c ambit -n ${q(cond)} -l ${w.slice(2)} -d ${q(d)}`);
      else lines.push(`complete -c ambit -n ${q(cond)} -a ${w} -d ${q(d)}`);
    }
  }
  return `${lines.join('\n')}\n`;
}

export function registerCompletion(program: Command): void {
  program
    .command('completion')
    .description('print a shell completion script: bash | zsh | fish')
    .argument('<shell>', 'bash | zsh | fish')
    .action((shell: string) => {
      const root = program;
      const make = { bash: bashCompletion, zsh: zshCompletion, fish: fishCompletion }[shell];
      if (!make) throw new UsageError(`completion: unknown shell "${shell}": one of bash, zsh, fish`);
      process.stdout.write(make(root));
    });
}
