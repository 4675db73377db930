//! System tests of the whole server: the binary's start/stop, the cross-protocol
//! conformance suite, the fault tests, the hostile-input matrix, and durability: the
//! binary killed and restarted on SQLite, two instances on one PostgreSQL.

mod cluster;
mod conformance;
mod crash;
mod edge;
mod faults;
mod hostile;
mod identity;
mod smoke;
mod support;
