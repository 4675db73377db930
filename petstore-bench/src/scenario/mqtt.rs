//! The MQTT bridge (QoS 1, the loopback broker): its publish rate vs a bare rumqttc
//! publisher sending the same messages per event; REST write throughput with the
//! bridge on vs off; REST-write-to-MQTT-receipt latency at 1,000 writes/s.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http_body_util::Full;
use rumqttc::v5;
use tokio::task::JoinHandle;

use super::{
    Config, Publisher, Seq, StorePublisher, Template, Tracker, new_pet_json, paced, saturate,
    seq_in,
};
use crate::load::{Call, closed_loop, expect};
use crate::measure::{Rounds, alternate};
use crate::report::{Row, Target, fig};
use crate::stack::{Stack, StackOptions};

const SCENARIO: &str = "mqtt";
/// Events in flight in the publish-rate rounds.
const WINDOW: u64 = 64;
/// Rate of the end-to-end latency rounds.
const E2E_RATE: f64 = 1000.0;

static CLIENT_IDS: AtomicU64 = AtomicU64::new(0);

fn client_id(what: &str) -> String {
    format!(
        "petstore-bench-{what}-{}",
        CLIENT_IDS.fetch_add(1, Ordering::Relaxed)
    )
}

/// A task that stops when dropped.
struct Task(JoinHandle<anyhow::Result<()>>);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Task {
    fn check(&self) -> anyhow::Result<()> {
        if self.0.is_finished() {
            bail!("an MQTT client stopped");
        }
        Ok(())
    }
}

/// A QoS 1 subscriber to `topic` that tells `tracker` of each message naming a pet
/// `{marker}{seq}`.
async fn subscriber(
    broker: SocketAddr,
    topic: &str,
    marker: String,
    tracker: Arc<Tracker>,
) -> anyhow::Result<Task> {
    let mut o = rumqttc::MqttOptions::new(client_id("sub"), broker.ip().to_string(), broker.port());
    o.set_keep_alive(Duration::from_secs(30))
        .set_clean_session(true)
        .set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut events) = rumqttc::AsyncClient::new(o, 64);
    client.subscribe(topic, rumqttc::QoS::AtLeastOnce).await?;
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_)) = events.poll().await? {
                return anyhow::Ok(());
            }
        }
    })
    .await
    .with_context(|| format!("no SUBACK from the broker at {broker}"))??;
    Ok(Task(tokio::spawn(async move {
        let _client = client;
        loop {
            if let rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)) =
                events.poll().await.context("MQTT subscriber")?
                && let Some(seq) = seq_in(&p.payload, &marker)
            {
                tracker.deliver(seq);
            }
        }
    })))
}

/// A bare rumqttc (MQTT 5, like the bridge) publisher sending, per event, what the
/// bridge sends for `pet.created`: `pets/new`, the retained `pets/{id}/status`,
/// `events/pet.created` and the retained `inventory` snapshot, all QoS 1.
struct BareMqtt {
    client: v5::AsyncClient,
    poller: Task,
    template: Template,
}

impl BareMqtt {
    async fn connect(
        broker: SocketAddr,
        (user, password): &(String, String),
        marker: &str,
    ) -> anyhow::Result<Self> {
        let mut o = v5::MqttOptions::new(
            client_id("bare-pub"),
            broker.ip().to_string(),
            broker.port(),
        );
        o.set_keep_alive(Duration::from_secs(30))
            .set_clean_start(true)
            .set_max_packet_size(Some(1 << 20))
            .set_connection_timeout(10)
            .set_credentials(user, password);
        let (client, mut events) = v5::AsyncClient::new(o, 256 * 4 + 16);
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if let v5::Event::Incoming(v5::mqttbytes::v5::Packet::ConnAck(_)) =
                    events.poll().await?
                {
                    return anyhow::Ok(());
                }
            }
        })
        .await
        .with_context(|| format!("no CONNACK from the broker at {broker}"))??;
        let poller = Task(tokio::spawn(async move {
            loop {
                events.poll().await.context("bare MQTT publisher")?;
            }
        }));
        Ok(Self {
            client,
            poller,
            template: Template::new(marker).await?,
        })
    }
}

impl Publisher for BareMqtt {
    async fn publish(&mut self, seq: u64) -> anyhow::Result<()> {
        use v5::mqttbytes::QoS::AtLeastOnce;
        let payload = Bytes::from(self.template.envelope(seq));
        let c = &self.client;
        c.publish("bare/pets/new", AtLeastOnce, false, payload.clone())
            .await?;
        c.publish(
            format!("bare/pets/pet_{seq:016x}/status"),
            AtLeastOnce,
            true,
            payload.clone(),
        )
        .await?;
        c.publish("bare/events/pet.created", AtLeastOnce, false, payload)
            .await?;
        c.publish(
            "bare/inventory",
            AtLeastOnce,
            true,
            format!(r#"{{"available":{seq},"pending":0,"sold":0}}"#),
        )
        .await?;
        Ok(())
    }
}

/// Writes each event as a REST `POST /v1/pets`, handed to a pool of keep-alive
/// connections so that one slow answer does not hold up the writes scheduled after it
/// (their latency still counts from their scheduled time).
struct RestPublisher {
    queue: tokio::sync::mpsc::UnboundedSender<u64>,
    writers: tokio::task::JoinSet<anyhow::Result<()>>,
}

impl RestPublisher {
    async fn start(
        addr: SocketAddr,
        token: &str,
        marker: String,
        conns: usize,
    ) -> anyhow::Result<Self> {
        let (queue, rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        let mut writers = tokio::task::JoinSet::new();
        for _ in 0..conns {
            let mut sender = crate::load::http1_connect::<Full<Bytes>>(addr).await?;
            let (rx, token, marker) = (rx.clone(), token.to_owned(), marker.clone());
            writers.spawn(async move {
                loop {
                    let Some(seq) = rx.lock().await.recv().await else {
                        return Ok(());
                    };
                    let req = http::Request::post("/v1/pets")
                        .header(http::header::HOST, addr.to_string())
                        .header(http::header::CONTENT_TYPE, "application/json")
                        .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
                        .body(Full::new(Bytes::from(new_pet_json(&format!(
                            "{marker}{seq}"
                        )))))?;
                    sender.ready().await?;
                    let resp = sender.send_request(req).await?;
                    let status = resp.status();
                    if status != http::StatusCode::CREATED {
                        bail!("POST /v1/pets on {addr}: {status}");
                    }
                    http_body_util::BodyExt::collect(resp.into_body()).await?;
                }
            });
        }
        Ok(Self { queue, writers })
    }
}

impl Publisher for RestPublisher {
    async fn publish(&mut self, seq: u64) -> anyhow::Result<()> {
        if let Some(ended) = self.writers.try_join_next() {
            ended??;
            bail!("a REST writer stopped");
        }
        self.queue
            .send(seq)
            .map_err(|_| anyhow::anyhow!("REST writers gone"))
    }
}

/// Sends one probe event and waits for it before a measurement. A new subscription
/// makes rumqttd 0.20 scan every retained message on its router thread (the earlier
/// rows leave hundreds of thousands of retained `pets/{id}/status` topics), which
/// stalls all traffic for up to ~150 ms: that is the cost of subscribing, not of
/// steady-state delivery, and it would land on whichever side starts sending first.
async fn settle<P: Publisher>(
    publisher: &mut P,
    tracker: &Tracker,
    seq: &mut Seq,
) -> anyhow::Result<()> {
    paced(publisher, tracker, seq, 1.0, Duration::from_millis(1)).await?;
    Ok(())
}

pub(crate) async fn run(cfg: &Config, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let on = Stack::start(StackOptions { mqtt: true }).await?;
    let off = match Stack::start(StackOptions { mqtt: false }).await {
        Ok(s) => s,
        Err(e) => {
            on.stop().await;
            return Err(e);
        }
    };
    let result = measure(cfg, &on, &off, rows).await;
    on.stop().await;
    off.stop().await;
    result
}

async fn measure(cfg: &Config, on: &Stack, off: &Stack, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let broker = on.mqtt.context("no MQTT broker")?;
    let b_topic = "petstore/events/pet.created";
    let a_topic = "bare/events/pet.created";
    // Publishers connect where the bridge does, as the bridge does; subscribers use the
    // common address.
    let embedded = on.mqtt_broker.as_ref().context("no embedded MQTT broker")?;
    let publish_to = embedded.v5_addr();
    let (user, password) = embedded.bridge_credentials();
    let login = (user, password.expose().to_owned());

    // --- publish rate ---
    eprintln!("  MQTT: publish rate, bridge vs bare rumqttc");
    let a_rate = async |round: usize, dur: Duration| -> anyhow::Result<f64> {
        let marker = format!("mq{round}a-");
        let tracker = Arc::new(Tracker::new(1));
        let sub = subscriber(broker, a_topic, marker.clone(), tracker.clone()).await?;
        let mut publisher = BareMqtt::connect(publish_to, &login, &marker).await?;
        let mut seq = Seq::default();
        settle(&mut publisher, &tracker, &mut seq).await?;
        let rate = saturate(&mut publisher, &tracker, &mut seq, dur, WINDOW).await?;
        sub.check()?;
        publisher.poller.check()?;
        Ok(rate)
    };
    let b_rate = async |round: usize, dur: Duration| -> anyhow::Result<f64> {
        let marker = format!("mq{round}b-");
        let tracker = Arc::new(Tracker::new(1));
        let sub = subscriber(broker, b_topic, marker.clone(), tracker.clone()).await?;
        let mut publisher = StorePublisher {
            store: on.store.clone(),
            who: on.admin(),
            marker,
        };
        let mut seq = Seq::default();
        settle(&mut publisher, &tracker, &mut seq).await?;
        let rate = saturate(&mut publisher, &tracker, &mut seq, dur, WINDOW).await?;
        sub.check()?;
        Ok(rate)
    };
    a_rate(1000, cfg.warmup).await?;
    b_rate(1000, cfg.warmup).await?;
    let r = alternate(
        cfg.rounds,
        |i| a_rate(i, cfg.round),
        |i| b_rate(i, cfg.round),
    )
    .await?;
    rows.push(
        Row::new(
            SCENARIO,
            "events/s published (QoS 1, 4 messages per pet.created)",
            fig(r.median_a(), "ev/s"),
            fig(r.median_b(), "ev/s"),
            r.ratio(),
            "x",
            Target::AtLeast(0.8),
        )
        .rounds(&r.ratios()),
    );

    // --- end-to-end latency at 1k/s ---
    eprintln!("  MQTT: REST write to MQTT receipt at {E2E_RATE} writes/s");
    let dur = if cfg.quick {
        cfg.round
    } else {
        cfg.round.max(Duration::from_secs(5))
    };
    let a_e2e = async |round: usize| -> anyhow::Result<f64> {
        let marker = format!("mqe{round}a-");
        let tracker = Arc::new(Tracker::new(1));
        let sub = subscriber(broker, a_topic, marker.clone(), tracker.clone()).await?;
        let mut publisher = BareMqtt::connect(publish_to, &login, &marker).await?;
        let mut seq = Seq::default();
        settle(&mut publisher, &tracker, &mut seq).await?;
        let run = paced(&mut publisher, &tracker, &mut seq, E2E_RATE, dur).await?;
        sub.check()?;
        Ok(run.p99_ms)
    };
    let b_e2e = async |round: usize| -> anyhow::Result<f64> {
        let marker = format!("mqe{round}b-");
        let tracker = Arc::new(Tracker::new(1));
        let sub = subscriber(broker, b_topic, marker.clone(), tracker.clone()).await?;
        let mut publisher = RestPublisher::start(on.http, &on.token, marker, 16).await?;
        let mut seq = Seq::default();
        settle(&mut publisher, &tracker, &mut seq).await?;
        let run = paced(&mut publisher, &tracker, &mut seq, E2E_RATE, dur).await?;
        sub.check()?;
        Ok(run.p99_ms)
    };
    let e2e = alternate(cfg.rounds, a_e2e, b_e2e).await?;
    rows.push(
        Row::new(
            SCENARIO,
            "p99 REST write -> MQTT receipt at 1k writes/s (bare: rumqttc publish -> receipt)",
            fig(e2e.median_a(), "ms"),
            fig(e2e.median_b(), "ms"),
            e2e.median_b(),
            "ms",
            Target::AtMost(10.0),
        )
        .note(format!(
            "rounds (ms): {}",
            e2e.b
                .iter()
                .map(|v| format!("{v:.2}"))
                .collect::<Vec<_>>()
                .join(" ")
        )),
    );

    // --- REST writes with the bridge on vs off ---
    eprintln!("  MQTT: REST POST throughput, bridge on vs off");
    let body = new_pet_json("Rex");
    let check = expect(201, &["\"id\":\"pet_"]);
    let call_off =
        Call::post_json(off.http, "/v1/pets", body.clone(), check.clone()).bearer(&off.token);
    let call_on = Call::post_json(on.http, "/v1/pets", body, check).bearer(&on.token);
    // After each measurement, wait until the bridge has published everything written,
    // so that one side's backlog does not slow the other.
    let caught_up = async |round: usize| -> anyhow::Result<()> {
        let marker = format!("mqc{round}-");
        let tracker = Arc::new(Tracker::new(1));
        let _sub = subscriber(broker, b_topic, marker.clone(), tracker.clone()).await?;
        let mut publisher = StorePublisher {
            store: on.store.clone(),
            who: on.admin(),
            marker,
        };
        let mut seq = Seq::default();
        super::publish_one(&mut publisher, &tracker, &mut seq).await?;
        tracker.drain(1, Duration::from_secs(120)).await
    };
    let conns = 32;
    for call in [&call_off, &call_on] {
        call.once().await?;
        closed_loop(call.workers(conns).await?, cfg.warmup).await?;
    }
    caught_up(1000).await?;
    let (call_off, call_on) = (&call_off, &call_on);
    let stuck = std::cell::RefCell::new(None::<String>);
    let stuck_ref = &stuck;
    let caught_up = &caught_up;
    // A bridge that never catches up is reported, not waited for again.
    let settle = move |round: usize| async move {
        let waiting = stuck_ref.borrow().is_none();
        if waiting && let Err(e) = caught_up(round).await {
            stuck_ref.replace(Some(format!("{e:#}")));
        }
    };
    let w: Rounds = alternate(
        cfg.rounds,
        move |i| async move {
            let rate = closed_loop(call_off.workers(conns).await?, cfg.round).await?;
            settle(2 * i).await;
            Ok(rate)
        },
        move |i| async move {
            let rate = closed_loop(call_on.workers(conns).await?, cfg.round).await?;
            settle(2 * i + 1).await;
            Ok(rate)
        },
    )
    .await?;
    rows.push(
        Row::new(
            SCENARIO,
            "REST POST throughput, bridge on (B) vs off (A)",
            fig(w.median_a(), "req/s"),
            fig(w.median_b(), "req/s"),
            w.ratio(),
            "x",
            Target::AtLeast(0.8),
        )
        .rounds(&w.ratios()),
    );
    if let Some(e) = stuck.into_inner() {
        let last = rows.last_mut().expect("pushed above");
        last.pass = Some(false);
        *last = last.clone().note(format!(
            "after a write burst the bridge did not publish a later event within 120 s: {e}"
        ));
    }
    Ok(())
}
