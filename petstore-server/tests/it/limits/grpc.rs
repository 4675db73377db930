//! The gRPC listener's limits through a tonic client (message size, calls per
//! connection) and raw HTTP/2 frames (keepalive: a peer that stops answering pings is
//! dropped).

use std::time::Duration;

use pb::pet_service_client::PetServiceClient;
use petstore_grpc::pb;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tonic::Code;

use super::start_tuned;
use crate::support::grpc::{bearer, channel};
use crate::support::within;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_over_the_size_limit_is_refused_before_the_store() {
    let server = start_tuned(|a| a.grpc_max_message_size = 16 * 1024).await;
    let mut pets = PetServiceClient::new(channel(&server).await);
    let huge = pb::CreatePetRequest {
        name: "x".repeat(32 * 1024),
        species: "dog".to_owned(),
        price: Some(pb::Money {
            amount: "1.00".to_owned(),
            currency: "USD".to_owned(),
        }),
        ..Default::default()
    };
    let before = server.store.head().await.unwrap();
    let err = within(
        "the refusal",
        pets.create_pet(bearer(huge, Some(&server.dev_token))),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err.code(), Code::OutOfRange | Code::ResourceExhausted),
        "{err:?}"
    );
    assert_eq!(
        server.store.head().await.unwrap(),
        before,
        "nothing changed"
    );
    // The connection still serves normal calls.
    let list = within(
        "a normal call",
        pets.list_pets(pb::ListPetsRequest::default()),
    )
    .await;
    assert!(list.is_ok(), "{list:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_holds_at_most_max_concurrent_streams_calls() {
    let server = start_tuned(|a| a.grpc_max_concurrent_streams = 2).await;
    let mut pets = PetServiceClient::new(channel(&server).await);
    let first = within(
        "the first watch",
        pets.watch_pets(pb::WatchPetsRequest::default()),
    )
    .await
    .unwrap();
    let _second = within(
        "the second watch",
        pets.watch_pets(pb::WatchPetsRequest::default()),
    )
    .await
    .unwrap();

    // A third call on the same connection waits for a free stream (the client obeys
    // the server's SETTINGS_MAX_CONCURRENT_STREAMS)...
    let mut third = pets.clone();
    let mut call = Box::pin(async move { third.list_pets(pb::ListPetsRequest::default()).await });
    assert!(
        tokio::time::timeout(Duration::from_millis(700), &mut call)
            .await
            .is_err(),
        "a third call ran while two streams were open"
    );
    // ...and runs as soon as one ends.
    drop(first);
    let listed = within("the third call once a stream ended", call).await;
    assert!(listed.is_ok(), "{listed:?}");
}

/// One HTTP/2 frame: (type, flags, payload).
async fn read_frame(tcp: &mut TcpStream) -> std::io::Result<(u8, u8, Vec<u8>)> {
    let mut head = [0u8; 9];
    tcp.read_exact(&mut head).await?;
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let mut payload = vec![0u8; len];
    tcp.read_exact(&mut payload).await?;
    Ok((head[3], head[4], payload))
}

const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const ACK: u8 = 0x1;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_does_not_answer_keepalive_pings_is_dropped() {
    let server = start_tuned(|a| {
        a.grpc_keepalive_interval = Duration::from_millis(200);
        a.grpc_keepalive_timeout = Duration::from_millis(200);
    })
    .await;
    let mut tcp = TcpStream::connect(server.grpc_addr.unwrap()).await.unwrap();
    // The client preface and empty SETTINGS; then this peer goes quiet.
    tcp.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    tcp.write_all(&[0, 0, 0, SETTINGS, 0, 0, 0, 0, 0])
        .await
        .unwrap();
    let mut pinged = false;
    let closed = within("the server to drop the silent peer", async {
        loop {
            match read_frame(&mut tcp).await {
                Ok((SETTINGS, flags, _)) if flags & ACK == 0 => {
                    // Acknowledge the server's settings: only pings go unanswered.
                    tcp.write_all(&[0, 0, 0, SETTINGS, ACK, 0, 0, 0, 0])
                        .await
                        .unwrap();
                }
                Ok((PING, flags, _)) if flags & ACK == 0 => pinged = true,
                Ok(_) => {}
                Err(e) => break e,
            }
        }
    })
    .await;
    assert!(pinged, "the server never pinged (closed with {closed})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grpc_connection_cap_closes_one_more_and_frees_its_places() {
    let server = start_tuned(|a| a.grpc_max_connections = 2).await;
    let addr = server.grpc_addr.expect("gRPC is served");
    // Two connections, each admitted once a call has been answered on it.
    let mut first = PetServiceClient::new(channel(&server).await);
    let mut second = PetServiceClient::new(channel(&server).await);
    for client in [&mut first, &mut second] {
        let listed = within(
            "a call on an admitted connection",
            client.list_pets(pb::ListPetsRequest::default()),
        )
        .await;
        assert!(listed.is_ok(), "{listed:?}");
    }

    // One more is closed at once: the client reads the end of the stream, not an
    // HTTP/2 SETTINGS frame.
    let mut third = TcpStream::connect(addr).await.unwrap();
    let _ = third
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await;
    let mut buf = [0u8; 64];
    let read = within("the refused connection to be closed", third.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "the third connection was served: {:?}",
        read.map(|n| buf[..n].to_vec())
    );

    // A place frees when a connection ends, and a new client gets through.
    drop(first);
    within("a call once a place is free", async {
        loop {
            if let Ok(channel) = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
                .unwrap()
                .connect()
                .await
                && PetServiceClient::new(channel)
                    .list_pets(pb::ListPetsRequest::default())
                    .await
                    .is_ok()
            {
                break;
            }
            // Until the server has seen the close, the cap still holds.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}
