// The discovery tier assembled: a MeshState kept by the tier's sources (manifests directory,
// Kubernetes) → the WDS resource table → the DeltaAggregatedResources service, ready to be
// registered on the CA's gRPC server (CaServerDeps.services), as istiod serves both on 15012.
import type * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { Authenticator } from '../ca/server/auth.js';
import { adsServiceDefinition } from '../core/sources/wds-proto.js';
import type { MeshState } from '../core/state/state.js';
import { WdsResources } from './resources.js';
import { DiscoveryService } from './server.js';

export interface Discovery {
  readonly resources: WdsResources;
  readonly service: DiscoveryService;
  /** For CaServerDeps.services. */
  grpcService(authenticator: Authenticator): {
    definition: grpc.ServiceDefinition;
    implementation: grpc.UntypedServiceImplementation;
  };
  close(): void;
}

export function createDiscovery(state: MeshState, logger: Logger, identifier?: string): Discovery {
  const resources = new WdsResources(state, logger);
  let service: DiscoveryService | undefined;
  return {
    resources,
    get service() {
      if (!service) throw new Error('discovery: grpcService() has not been called');
      return service;
    },
    grpcService(authenticator) {
      service = new DiscoveryService({
        resources,
        authenticator,
        logger,
        ...(identifier ? { identifier } : {}),
      });
      return { definition: adsServiceDefinition(), implementation: service.handlers() };
    },
    close() {
      service?.closeStreams();
      resources.close();
    },
  };
}
