//! Tests of the example server and clients: every client binary against a running
//! server, the server binary's start/stop, and the cross-protocol conformance suite.

mod conformance;
mod edge;
mod faults;
mod hostile;
mod smoke;
