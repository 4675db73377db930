//! System tests of the whole server: the binary's start/stop, the cross-protocol
//! conformance suite, the fault tests, the hostile-input matrix, the connection and
//! resource limits, and durability: the binary killed and restarted on SQLite, two
//! instances on one PostgreSQL.

mod cluster;
mod conformance;
mod crash;
mod edge;
mod faults;
mod hostile;
mod identity;
mod limits;
mod observability;
mod otlp;
mod smoke;
mod snapshots;
mod support;
