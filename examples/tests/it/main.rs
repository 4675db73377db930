//! Tests of the example clients: every client binary, and the tour, against a running
//! server. The server's own suites (conformance, faults, hostile input) are in
//! `petstore-server/tests`.

mod smoke;
