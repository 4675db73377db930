//! Retention: readers keep to the retained window exactly, and rows deleted under a
//! reader (by an instance that keeps fewer events) are refused or reported, never
//! skipped in silence.

use futures_util::StreamExt;
use petstore_core::{ErrorKind, EventFilter, EventLog, LogConfig, ResumeToken};
use sqlx::Connection;

use crate::support::{WAIT, connect, new_pet, on_both, service, sqlite_url, staff};

on_both!(deleted_rows_are_refused_not_skipped, |url| {
    let long = connect(&url, LogConfig::default().retention(1000)).await;
    let short = service(connect(&url, LogConfig::default().retention(4)).await);
    for i in 0..100 {
        short
            .create_pet(&staff(), new_pet(&format!("P{i}")))
            .await
            .unwrap();
    }
    let epoch = long.head().await.unwrap().epoch;
    // Within `long`'s retention, but `short` deleted those rows.
    let old = ResumeToken::new(epoch, 10);
    let err = long
        .read(Some(old), 10, &EventFilter::all())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ResumeExpired, "{err:?}");
    let err = long
        .subscribe(Some(old), EventFilter::all())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ResumeExpired, "{err:?}");
    // The newest events are still there for both.
    let recent = ResumeToken::new(epoch, 97);
    let batch = long
        .read(Some(recent), 10, &EventFilter::all())
        .await
        .unwrap();
    assert_eq!(
        batch
            .events
            .iter()
            .map(|e| e.offset().offset)
            .collect::<Vec<_>>(),
        [98, 99, 100]
    );
});

on_both!(deletion_keeps_the_table_bounded, |url| {
    let store = connect(&url, LogConfig::default().retention(10)).await;
    let svc = service(store.clone());
    for i in 0..300 {
        svc.create_pet(&staff(), new_pet(&format!("P{i}")))
            .await
            .unwrap();
    }
    // Readers see exactly the newest 10...
    let all = store.read(None, 1000, &EventFilter::all()).await.unwrap();
    assert_eq!(
        all.events.first().map(|e| e.offset().offset),
        Some(291),
        "the retained window"
    );
    // ...and the table holds at most one deletion batch more.
    // (The store installed sqlx's `Any` drivers.)
    let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert!((10..=10 + 64 + 1).contains(&rows), "{rows} rows kept");
});

/// A follower that fell behind retention (here: it is only woken by its own commits,
/// and another store on the same SQLite file wrote and deleted meanwhile) tells its
/// live subscribers that they missed events instead of skipping them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_behind_retention_cuts_live_subscribers_off() {
    let url = sqlite_url();
    let behind = connect(&url, LogConfig::default()).await;
    let mut sub = behind.subscribe(None, EventFilter::all()).await.unwrap();
    let other = service(connect(&url, LogConfig::default().retention(4)).await);
    for i in 0..100 {
        other
            .create_pet(&staff(), new_pet(&format!("P{i}")))
            .await
            .unwrap();
    }
    service(behind.clone())
        .create_pet(&staff(), new_pet("wake"))
        .await
        .unwrap();
    let item = tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("the subscriber is told")
        .expect("an item before the end");
    assert_eq!(item.unwrap_err().kind(), ErrorKind::Lagged);
    assert!(
        sub.next().await.is_none(),
        "the stream ends after the lag signal"
    );
    // New subscribers start from the new position and see new events.
    let mut fresh = behind.subscribe(None, EventFilter::all()).await.unwrap();
    service(behind.clone())
        .create_pet(&staff(), new_pet("after"))
        .await
        .unwrap();
    let event = crate::support::next_event(&mut fresh).await;
    assert_eq!(event.offset().offset, 102);
}
