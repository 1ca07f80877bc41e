// The certificate client used by ztunnel and waypoints (istio/ztunnel src/identity/manager.rs).
export type { WorkloadCertificate } from './workload-certificate.js';
