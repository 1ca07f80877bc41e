import type { Command } from 'commander';

export function registerDemo(program: Command): void {
  const demo = program.command('demo').description('the one-machine mesh demo');
  demo
    .command('up')
    .description('build two nodes and several pods as network namespaces and run the mesh')
    .action(() => {
      console.log(
        'ambit demo: not built yet (see issue "ambit demo"); the components it needs are landing first.',
      );
    });
}
