//! System tests of the whole server: the binary's start/stop, the cross-protocol
//! conformance suite, the fault tests and the hostile-input matrix.

mod conformance;
mod edge;
mod faults;
mod hostile;
mod identity;
mod smoke;
mod support;
