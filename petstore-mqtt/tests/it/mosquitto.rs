//! Against a real Mosquitto: the CI broker (`PETSTORE_TEST_MOSQUITTO_URL`, open to
//! anyone) and brokers these tests spawn themselves (`PETSTORE_TEST_MOSQUITTO_BIN`,
//! default `/usr/sbin/mosquitto`). Each test skips with a message when its broker is
//! absent (`petstore_core::testing::skip`: a failure when `PETSTORE_REQUIRE_ALL` is set). The attacker's tests against a Mosquitto locked with the shipped
//! configuration are in `security.rs`.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use petstore_mqtt::{Bridge, MqttConfig, StartFrom};

use crate::brokers::{Mosquitto, Target};
use crate::embedded::see_every_offset;
use crate::scenarios::{self, start_bridge, unique_prefix};
use crate::support::*;

#[tokio::test]
async fn events_reach_every_topic() {
    let Some(target) = Target::open() else { return };
    scenarios::events_reach_every_topic(&target).await;
}

#[tokio::test]
async fn retained_messages_reach_a_late_subscriber() {
    let Some(target) = Target::open() else { return };
    scenarios::retained_messages_reach_a_late_subscriber(&target).await;
}

#[tokio::test]
async fn commands_reply_on_the_response_topic() {
    let Some(target) = Target::open() else { return };
    scenarios::commands_reply_on_the_response_topic(&target).await;
}

#[tokio::test]
async fn malformed_commands_get_an_error_reply_and_change_nothing() {
    let Some(target) = Target::open() else { return };
    scenarios::malformed_commands_get_an_error_reply_and_change_nothing(&target).await;
}

/// The shipped configuration runs the bridge's own scenarios too.
#[tokio::test]
async fn locked_retained_messages_reach_a_late_subscriber() {
    let Some(target) = Target::locked() else {
        return;
    };
    scenarios::retained_messages_reach_a_late_subscriber(&target).await;
}

#[tokio::test]
async fn locked_commands_reply_on_the_response_topic() {
    let Some(target) = Target::locked() else {
        return;
    };
    scenarios::commands_reply_on_the_response_topic(&target).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restart_mid_burst_loses_no_event() {
    let Some(bin) = Mosquitto::binary() else {
        return;
    };
    let mut broker = Mosquitto::start(bin, "allow_anonymous true");
    let url = broker.url();
    let store = seeded_store().await;
    let p = unique_prefix("restart");
    // A device with a persistent session: the broker keeps its subscription and
    // queues messages for it across its own restart.
    let mut sub = Client::persistent(&url, &format!("{}sub", p.trim_end_matches('/'))).await;
    sub.subscribe(&format!("{p}events/#")).await;
    let bridge = start_bridge(
        &store,
        MqttConfig::default()
            .url(&url)
            .client_id(format!("{}b", p.trim_end_matches('/')))
            .topic_prefix(&p)
            .start_from(StartFrom::Head)
            .queue_len(8)
            .reconnect_delay(Duration::from_millis(50), Duration::from_millis(200)),
    )
    .await;
    let start = store.head().await.unwrap();
    for i in 0..150 {
        create_pet(&store, &format!("Burst{i}")).await;
    }
    let before = wait_status(&bridge, "20 events acknowledged", |s| {
        s.last_acked.is_some_and(|a| a.offset >= start.offset + 20)
    })
    .await;
    let store2 = store.clone();
    let writer = tokio::spawn(async move {
        for i in 150..300 {
            create_pet(&store2, &format!("Burst{i}")).await;
        }
    });
    // Restart the broker while the writer is still appending events.
    let _broker = tokio::task::spawn_blocking(move || {
        broker.restart();
        broker
    })
    .await
    .unwrap();
    writer.await.unwrap();
    let head = store.head().await.unwrap();
    let status = wait_status(&bridge, "caught up after the restart", |s| {
        s.last_acked == Some(head)
    })
    .await;
    assert!(status.connects >= 2, "{status:?}");
    let resumed = status.resumed_from.unwrap();
    assert!(
        resumed.offset >= before.last_acked.unwrap().offset && resumed.offset < head.offset,
        "resumed from {resumed} (acked before: {before:?}, head {head})"
    );
    let expected: BTreeSet<u64> = (start.offset + 1..=head.offset).collect();
    // Copies may come from the bridge (up to 8 events in flight after `resumed`) and
    // from the broker, which redelivers to the persistent subscriber what it had in
    // flight to it when it stopped. The subscriber may lag the bridge by any amount,
    // so those are any events the broker accepted before the restart, all at or before
    // `resumed` (the bridge never publishes those again: it resumes after `resumed`).
    // After `resumed + 8` nothing may arrive twice.
    let may_repeat = start.offset + 1..=resumed.offset + 8;
    see_every_offset(&mut sub, &store, &expected, may_repeat).await;
    bridge.shutdown().await;
}

#[tokio::test]
async fn broker_credentials_are_used() {
    let Some(bin) = Mosquitto::binary() else {
        return;
    };
    let Some(passwd) = Mosquitto::passwd_tool(&bin) else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("petstore-mqtt-it-pw-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("passwd");
    let made = Command::new(&passwd)
        .args(["-b", "-c"])
        .arg(&file)
        .args(["bridge", "s3cret"])
        .status();
    assert!(
        made.is_ok_and(|s| s.success()),
        "mosquitto_passwd creates the bridge's account"
    );
    let broker = Mosquitto::start(
        bin,
        &format!("allow_anonymous false\npassword_file {}", file.display()),
    );
    let store = seeded_store().await;
    let wrong = Bridge::start(
        store.clone(),
        MqttConfig::default()
            .url(broker.url())
            .client_id("pw-wrong")
            .credentials("bridge", "nope")
            .reconnect_delay(Duration::from_millis(50), Duration::from_millis(100)),
        tokio_util::sync::CancellationToken::new(),
    )
    .unwrap();
    let status = wait_status(&wrong, "a refusal", |s| s.last_error.is_some()).await;
    assert!(!status.connected && status.connects == 0, "{status:?}");
    drop(wrong);
    let right = start_bridge(
        &store,
        MqttConfig::default()
            .url(broker.url())
            .client_id("pw-right")
            .credentials("bridge", "s3cret"),
    )
    .await;
    assert!(right.status().connected);
    right.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Makes a CA and a server certificate for 127.0.0.1 with the openssl CLI.
fn make_certs(openssl: &Path, dir: &Path) {
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    let steps: [&[&str]; 4] = [
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "other.key",
            "-out",
            "other.pem",
            "-days",
            "2",
            "-subj",
            "/CN=some-other-ca",
        ],
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=petstore-test-ca",
        ],
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "san.ext",
        ],
    ];
    for args in steps {
        let made = Command::new(openssl)
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .output()
            .expect("openssl runs");
        assert!(
            made.status.success(),
            "openssl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&made.stderr)
        );
    }
}

#[tokio::test]
async fn mqtts_with_a_private_ca() {
    let Some(bin) = Mosquitto::binary() else {
        return;
    };
    let certs = std::env::temp_dir().join(format!("petstore-mqtt-it-tls-{}", std::process::id()));
    std::fs::create_dir_all(&certs).unwrap();
    let Some(openssl) = petstore_core::testing::program_or_skip(
        "openssl",
        "install Debian's `openssl`: the test makes a private CA with it",
    ) else {
        return;
    };
    make_certs(&openssl, &certs);
    let broker = Mosquitto::start(
        bin,
        &format!(
            "allow_anonymous true\ncafile {0}/ca.pem\ncertfile {0}/server.pem\nkeyfile {0}/server.key",
            certs.display()
        ),
    );
    let tls_url = format!("mqtts://127.0.0.1:{}", broker.port);
    let store = seeded_store().await;
    // A CA that did not sign the server's certificate: no connection.
    let untrusted = Bridge::start(
        store.clone(),
        MqttConfig::default()
            .url(&tls_url)
            .client_id("tls-untrusted")
            .ca_file(certs.join("other.pem")),
        tokio_util::sync::CancellationToken::new(),
    )
    .unwrap();
    let status = wait_status(&untrusted, "a TLS failure", |s| s.last_error.is_some()).await;
    assert!(!status.connected && status.connects == 0, "{status:?}");
    let error = status.last_error.unwrap();
    assert!(
        error.contains("TLS") || error.contains("ertificate"),
        "{error}"
    );
    drop(untrusted);
    let bridge = start_bridge(
        &store,
        MqttConfig::default()
            .url(&tls_url)
            .client_id("tls-bridge")
            .ca_file(certs.join("ca.pem")),
    )
    .await;
    assert!(bridge.status().connected);
    bridge.shutdown().await;
    let _ = std::fs::remove_dir_all(&certs);
}
