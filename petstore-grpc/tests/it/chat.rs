//! ChatService: bidirectional streaming between clients.

use petstore_core::Scope;
use petstore_grpc::pb;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Request, Streaming};
use tonic_types::StatusExt as _;

use crate::support::{TestServer, next, within};

/// An open chat call: a sender for our messages and the server's stream.
struct Chatter {
    send: mpsc::Sender<pb::ChatSend>,
    recv: Streaming<pb::ChatMessage>,
}

impl Chatter {
    async fn say(&self, room: &str, text: &str) {
        self.send
            .send(pb::ChatSend {
                room: room.to_owned(),
                text: text.to_owned(),
            })
            .await
            .unwrap();
    }
}

async fn join(
    server: &TestServer,
    authorization: Option<&str>,
    rooms: Option<&str>,
) -> Result<Chatter, tonic::Status> {
    let (send, rx) = mpsc::channel(16);
    let mut request = Request::new(ReceiverStream::new(rx));
    if let Some(a) = authorization {
        request
            .metadata_mut()
            .insert("authorization", a.parse().unwrap());
    }
    if let Some(rooms) = rooms {
        request
            .metadata_mut()
            .insert("chat-rooms", rooms.parse().unwrap());
    }
    let recv = within(server.chat().await.chat(request))
        .await?
        .into_inner();
    Ok(Chatter { send, recv })
}

#[tokio::test]
async fn two_clients_chat_in_a_room() {
    let server = TestServer::start().await;
    let alice = server.bearer("alice", [Scope::ChatWrite]);
    let bob = server.bearer("bob", [Scope::ChatWrite]);
    let mut a = join(&server, Some(&alice), Some("support")).await.unwrap();
    let mut b = join(&server, Some(&bob), Some("support")).await.unwrap();

    a.say("support", "hello from alice").await;
    for chatter in [&mut a, &mut b] {
        let m = next(&mut chatter.recv).await.unwrap();
        assert_eq!(
            (m.room.as_str(), m.author.as_str(), m.text.as_str()),
            ("support", "alice", "hello from alice")
        );
        assert!(m.id.starts_with("msg_"));
        assert!(!m.offset.is_empty());
    }

    // Bob talks in another room (not followed), then in support: Alice sees only the latter.
    b.say("sales", "psst").await;
    b.say("support", "hi alice").await;
    let m = next(&mut a.recv).await.unwrap();
    assert_eq!((m.author.as_str(), m.text.as_str()), ("bob", "hi alice"));

    // A client without `chat-rooms` follows every room.
    let mut c = join(&server, Some(&alice), None).await.unwrap();
    b.say("sales", "all rooms").await;
    let m = next(&mut c.recv).await.unwrap();
    assert_eq!((m.room.as_str(), m.text.as_str()), ("sales", "all rooms"));

    // Half-closing the sending side keeps the receiving side open.
    let Chatter {
        send,
        recv: mut a_recv,
    } = a;
    drop(send);
    b.say("support", "still there?").await;
    // a saw "hi alice"; next for a is the new support message.
    let m = next(&mut a_recv).await.unwrap();
    assert_eq!(m.text, "still there?");
}

#[tokio::test]
async fn chat_needs_a_token_and_ends_on_a_rejected_message() {
    let server = TestServer::start().await;

    let err = join(&server, None, None)
        .await
        .err()
        .expect("anonymous chat is refused");
    assert_eq!(err.code(), Code::Unauthenticated);

    let err = join(&server, Some("Bearer not-a-jwt"), None)
        .await
        .err()
        .expect("a bad token is refused");
    assert_eq!(err.code(), Code::Unauthenticated);

    let alice = server.bearer("alice", [Scope::ChatWrite]);
    let err = join(&server, Some(&alice), Some("Not A Room"))
        .await
        .err()
        .expect("bad room names are refused");
    assert_eq!(err.code(), Code::InvalidArgument);

    // A reader without chat:write may listen, but posting ends the call.
    let reader = server.bearer("reader", [Scope::PetsRead]);
    let mut r = join(&server, Some(&reader), None).await.unwrap();
    r.say("support", "can I talk?").await;
    let err = next(&mut r.recv).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    // An invalid message ends the call with INVALID_ARGUMENT naming the field.
    let mut a = join(&server, Some(&alice), None).await.unwrap();
    a.say("support", "   ").await;
    let err = next(&mut a.recv).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let fields: Vec<_> = err
        .get_details_bad_request()
        .expect("BadRequest details")
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect();
    assert_eq!(fields, ["text"]);
    assert_eq!(
        server.store.head().await.unwrap().offset,
        0,
        "nothing was posted"
    );
}
