#!/usr/bin/env node
// `ambit`: the operator CLI. One file per command group registers its subcommands here.
import { Command } from 'commander';
import { registerBpfAgent } from './bpf-agent.js';
import { registerCa } from './ca.js';
import { registerDemo } from './demo.js';
import { registerPolicy } from './policy.js';
import { registerState } from './state.js';
import { registerWaypoint } from './waypoint.js';
import { registerStatus } from './status.js';
import { registerZtunnel } from './ztunnel.js';
import { registerZtunnelConfig } from './ztunnel-config.js';
import { registerWaypointController } from './waypoint-controller.js';

const program = new Command();
program
  .name('ambit')
  .description('Ambit: a sidecar-less (ambient) service mesh speaking Istio ambient contracts')
  .showHelpAfterError();

registerDemo(program);
registerBpfAgent(program);
registerCa(program);
registerPolicy(program);
registerState(program);
registerWaypoint(program);
registerStatus(program);
registerZtunnel(program);
registerZtunnelConfig(program);
registerWaypointController(program);

program.parseAsync(process.argv).catch((err: unknown) => {
  console.error(`ambit: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(2);
});
