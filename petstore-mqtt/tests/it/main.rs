//! Integration tests: the bridge against the embedded rumqttd broker and, when
//! available, a real Mosquitto (`PETSTORE_TEST_MOSQUITTO_URL`, and the `mosquitto`
//! binary for the broker-restart test).

mod embedded;
mod mosquitto;
mod scenarios;
mod support;
