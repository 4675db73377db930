//! Tests of the example server and clients: every client binary against a running
//! server, the server binary's start/stop, the cross-protocol conformance suite, and
//! tokens from an identity provider.

mod conformance;
mod faults;
mod hostile;
mod identity;
mod smoke;
