// The topology lives in netns/topology.ts so `ambit demo` can build the same namespaces at run
// time; the tests keep importing it from here.
export * from '../../netns/topology.js';
