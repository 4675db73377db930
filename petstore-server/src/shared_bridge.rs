//! The MQTT bridge to an external broker that several instances share: one publisher
//! per database. Each instance asks for the lease `petstore-mqtt/bridge` in the
//! store; the holder runs the bridge and saves the position the broker acknowledged
//! as the cursor of the same name, and an instance taking over (the holder died or
//! stopped) starts its bridge after that cursor. Events the old holder published but
//! had not saved yet (at most [`SAVE_EVERY`] of them) are published again: at least
//! once, never lost.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use petstore_core::PetStore;
use petstore_mqtt::{Bridge, BridgeStatus, MqttConfig, StartFrom};
use petstore_sql::SqlStore;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The lease and cursor name.
const NAME: &str = "petstore-mqtt/bridge";
/// How long a grant lasts: a dead holder's events wait this long at most.
const TTL: Duration = Duration::from_secs(6);
/// How often the holder saves the acknowledged position.
const SAVE_EVERY: Duration = Duration::from_millis(200);

/// The status of this instance's bridge: `None` while another instance holds the
/// lease (standing by is healthy).
pub(crate) type Status = Arc<Mutex<Option<watch::Receiver<BridgeStatus>>>>;

/// Runs until `shutdown`: waits for the lease, runs the bridge while it holds it,
/// and starts over when it loses it.
pub(crate) async fn run(
    store: PetStore,
    sql: SqlStore,
    config: MqttConfig,
    status: Status,
    shutdown: CancellationToken,
) {
    loop {
        // Wait for the lease.
        loop {
            match store.hold_lease(NAME, TTL).await {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "cannot acquire the MQTT bridge lease"),
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(TTL / 3) => {}
            }
        }
        let start_from = match sql.cursor(NAME).await {
            Ok(Some(cursor)) => StartFrom::After(cursor),
            Ok(None) => config.start_from,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the MQTT bridge cursor; retrying");
                store.release_lease(NAME).await.ok();
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(TTL / 3) => {}
                }
                continue;
            }
        };
        tracing::info!(?start_from, "this instance holds the MQTT bridge lease");
        let stop = shutdown.child_token();
        let bridge = match Bridge::start(
            store.clone(),
            config.clone().start_from(start_from),
            stop.clone(),
        ) {
            Ok(bridge) => bridge,
            Err(e) => {
                tracing::error!(error = %e, "cannot start the MQTT bridge");
                store.release_lease(NAME).await.ok();
                return;
            }
        };
        let mut updates = bridge.status_updates();
        *status.lock().unwrap_or_else(|p| p.into_inner()) = Some(updates.clone());
        let mut saved = None;
        let mut granted = Instant::now();
        let mut renew = tokio::time::interval(TTL / 3);
        let mut save = tokio::time::interval(SAVE_EVERY);
        let lost = loop {
            tokio::select! {
                () = shutdown.cancelled() => break false,
                _ = renew.tick() => match store.hold_lease(NAME, TTL).await {
                    Ok(true) => granted = Instant::now(),
                    Ok(false) => break true,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot renew the MQTT bridge lease");
                        // Another instance may take it after the grant: stop first.
                        if granted.elapsed() >= TTL * 2 / 3 {
                            break true;
                        }
                    }
                },
                _ = save.tick() => {
                    let acked = updates.borrow_and_update().last_acked;
                    if let Some(acked) = acked.filter(|a| Some(*a) != saved) {
                        match sql.save_cursor(NAME, acked).await {
                            Ok(()) => saved = Some(acked),
                            Err(e) => tracing::warn!(error = %e, "cannot save the MQTT bridge cursor"),
                        }
                    }
                }
            }
        };
        if lost {
            tracing::warn!("lost the MQTT bridge lease; another instance publishes now");
        }
        bridge.shutdown().await;
        // What the broker acknowledged up to the clean stop.
        let acked = updates.borrow().last_acked;
        if let Some(acked) = acked
            && Some(acked) != saved
            && !lost
            && let Err(e) = sql.save_cursor(NAME, acked).await
        {
            tracing::warn!(error = %e, "cannot save the MQTT bridge cursor");
        }
        *status.lock().unwrap_or_else(|p| p.into_inner()) = None;
        if !lost {
            store.release_lease(NAME).await.ok();
            return;
        }
    }
}
