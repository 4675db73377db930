//! Integration tests: the bridge against the embedded rumqttd broker and, when
//! available, a real Mosquitto (`PETSTORE_TEST_MOSQUITTO_URL` for the CI's open broker,
//! the `mosquitto` binary for brokers the tests start, the shipped locked configuration
//! among them).

mod brokers;
mod embedded;
mod mosquitto;
mod scenarios;
mod security;
mod support;
