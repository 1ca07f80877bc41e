// The topology moved to core/netns/topology.ts so `ambit demo` can build the same namespaces at run
// time; the tests keep importing it from here.
export * from '../../core/netns/topology.js';
