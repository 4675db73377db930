//! System tests of the whole server: the binary's start/stop, the cross-protocol
//! conformance suite, the fault tests, the hostile-input matrix and the connection and
//! resource limits.

mod conformance;
mod edge;
mod faults;
mod hostile;
mod identity;
mod limits;
mod observability;
mod smoke;
mod snapshots;
mod support;
