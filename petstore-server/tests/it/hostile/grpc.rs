//! The gRPC table: invalid fields, unknown enum values, credentials, update masks,
//! stale versions, resume positions, and raw frames (malformed protobuf, invalid UTF-8,
//! oversize, a compressed flag without an encoding) over h2c.

use std::time::Duration;

use petstore_grpc::pb;

use super::{Matrix, Setup, expect_eq, other_epoch_token, setup};
use crate::support::grpc::{self as grpc_client, with_auth};
use crate::support::within;

const GRPC_ROWS: usize = 29;

/// One gRPC call of the table.
enum Call {
    CreatePet(pb::CreatePetRequest),
    GetPet(pb::GetPetRequest),
    UpdatePet(pb::UpdatePetRequest),
    PlaceOrder(pb::PlaceOrderRequest),
    WatchPets(pb::WatchPetsRequest),
    Chat(pb::ChatSend),
    /// Raw bytes: a gRPC frame (or anything) POSTed to `path` over h2c.
    Raw {
        path: &'static str,
        content_type: &'static str,
        body: Vec<u8>,
    },
}

/// A gRPC row: name, call, `authorization` metadata, expected code, expected
/// `BadRequest` field.
type GrpcRow<'a> = (&'a str, Call, Option<String>, tonic::Code, Option<&'a str>);

/// Runs a call; `Err` is the status it ended with.
async fn grpc_call(
    channel: &tonic::transport::Channel,
    h2: &reqwest::Client,
    addr: &str,
    call: Call,
    auth: Option<&str>,
) -> Result<(), tonic::Status> {
    use pb::chat_service_client::ChatServiceClient;
    use pb::pet_service_client::PetServiceClient;
    use pb::store_service_client::StoreServiceClient;
    let mut pets = PetServiceClient::new(channel.clone());
    let mut store = StoreServiceClient::new(channel.clone());
    match call {
        Call::CreatePet(m) => pets.create_pet(with_auth(m, auth)).await.map(drop),
        Call::GetPet(m) => pets.get_pet(with_auth(m, auth)).await.map(drop),
        Call::UpdatePet(m) => pets.update_pet(with_auth(m, auth)).await.map(drop),
        Call::PlaceOrder(m) => store.place_order(with_auth(m, auth)).await.map(drop),
        Call::WatchPets(m) => {
            let mut stream = pets.watch_pets(with_auth(m, auth)).await?.into_inner();
            // A live watch with nothing to send waits: only an error ends it in time.
            match tokio::time::timeout(Duration::from_secs(5), stream.message()).await {
                Ok(Err(status)) => Err(status),
                Ok(Ok(_)) => Ok(()),
                Err(_) => Ok(()),
            }
        }
        Call::Chat(m) => {
            let mut chat = ChatServiceClient::new(channel.clone());
            let (tx, rx) = tokio::sync::mpsc::channel(1);
            tx.send(m).await.expect("queued");
            let mut stream = chat
                .chat(with_auth(
                    tokio_stream::wrappers::ReceiverStream::new(rx),
                    auth,
                ))
                .await?
                .into_inner();
            match tokio::time::timeout(Duration::from_secs(5), stream.message()).await {
                Ok(Err(status)) => Err(status),
                _ => Ok(()),
            }
        }
        Call::Raw {
            path,
            content_type,
            body,
        } => {
            let response = h2
                .post(format!("http://{addr}{path}"))
                .header("content-type", content_type)
                .header("te", "trailers")
                .body(body)
                .send()
                .await
                .map_err(|e| tonic::Status::unknown(format!("raw request failed: {e}")))?;
            let http = response.status().as_u16();
            let header = |n: &str| {
                response
                    .headers()
                    .get(n)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            match header("grpc-status") {
                Some(code) => {
                    let code = tonic::Code::from_i32(code.parse().unwrap_or(2));
                    let message = header("grpc-message").unwrap_or_default();
                    if code == tonic::Code::Ok {
                        Ok(())
                    } else {
                        Err(tonic::Status::new(code, message))
                    }
                }
                None => Err(tonic::Status::unknown(format!(
                    "HTTP {http} without grpc-status in the headers"
                ))),
            }
        }
    }
}

fn grpc_frame(message: &[u8], compressed: bool) -> Vec<u8> {
    let mut out = vec![u8::from(compressed)];
    out.extend_from_slice(&u32::try_from(message.len()).expect("small").to_be_bytes());
    out.extend_from_slice(message);
    out
}

/// Protobuf: field `number` as a length-delimited value.
fn proto_bytes(number: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![(number << 3) | 2];
    let mut len = value.len();
    loop {
        let byte = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            out.push(byte);
            break;
        }
        out.push(byte | 0x80);
    }
    out.extend_from_slice(value);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_refuses_hostile_input_and_changes_nothing() {
    use tonic::Code;
    use tonic_types::StatusExt as _;
    let Setup {
        s,
        t,
        rex,
        shelly,
        head,
        ..
    } = setup().await;
    let addr = s.grpc_addr.expect("gRPC is on").to_string();
    let channel = grpc_client::channel(&s).await;
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let money = |amount: &str, currency: &str| {
        Some(pb::Money {
            amount: amount.into(),
            currency: currency.into(),
        })
    };
    let pet = || pb::CreatePetRequest {
        name: "Hostile".into(),
        species: "dog".into(),
        price: money("10.00", "USD"),
        ..Default::default()
    };
    let bearer = |tok: &str| Some(format!("Bearer {tok}"));
    let all = bearer(&t.all);
    let mut create_with_bad_utf8 = proto_bytes(1, b"\xff\xfe");
    create_with_bad_utf8.extend(proto_bytes(2, b"dog"));
    let big_species = proto_bytes(2, &vec![b'a'; 5 * 1024 * 1024]);
    let create_path = "/petstore.v1.PetService/CreatePet";
    let grpc_ct = "application/grpc";

    let rows: Vec<GrpcRow<'_>> = vec![
        (
            "empty name",
            Call::CreatePet(pb::CreatePetRequest {
                name: String::new(),
                ..pet()
            }),
            all.clone(),
            Code::InvalidArgument,
            Some("name"),
        ),
        (
            "no price",
            Call::CreatePet(pb::CreatePetRequest {
                price: None,
                ..pet()
            }),
            all.clone(),
            Code::InvalidArgument,
            Some("price"),
        ),
        (
            "unknown enum value 99",
            Call::CreatePet(pb::CreatePetRequest {
                status: 99,
                ..pet()
            }),
            all.clone(),
            Code::InvalidArgument,
            Some("status"),
        ),
        (
            "age u32::MAX",
            Call::CreatePet(pb::CreatePetRequest {
                age: Some(u32::MAX),
                ..pet()
            }),
            all.clone(),
            Code::InvalidArgument,
            Some("age"),
        ),
        (
            "price 1e999",
            Call::CreatePet(pb::CreatePetRequest {
                price: money("1e999", "USD"),
                ..pet()
            }),
            all.clone(),
            Code::InvalidArgument,
            None,
        ),
        (
            "lower-case currency",
            Call::CreatePet(pb::CreatePetRequest {
                price: money("1.00", "usd"),
                ..pet()
            }),
            all.clone(),
            Code::InvalidArgument,
            None,
        ),
        (
            "SQL injection in species",
            Call::CreatePet(pb::CreatePetRequest {
                species: "dog'; DROP TABLE pets;--".into(),
                ..pet()
            }),
            all.clone(),
            Code::InvalidArgument,
            Some("species"),
        ),
        (
            "NUL in the name",
            Call::CreatePet(pb::CreatePetRequest {
                name: "Rex\0".into(),
                ..pet()
            }),
            all.clone(),
            Code::InvalidArgument,
            Some("name"),
        ),
        (
            "missing token",
            Call::CreatePet(pet()),
            None,
            Code::Unauthenticated,
            None,
        ),
        (
            "expired token",
            Call::CreatePet(pet()),
            bearer(&t.expired),
            Code::Unauthenticated,
            None,
        ),
        (
            "forged token",
            Call::CreatePet(pet()),
            bearer(&t.forged),
            Code::Unauthenticated,
            None,
        ),
        (
            "alg none token",
            Call::CreatePet(pet()),
            bearer(&t.none),
            Code::Unauthenticated,
            None,
        ),
        (
            "Basic credentials",
            Call::CreatePet(pet()),
            Some("Basic YWRtaW46YWRtaW4tcGFzc3dvcmQ=".into()),
            Code::Unauthenticated,
            None,
        ),
        (
            "token without the scope",
            Call::CreatePet(pet()),
            bearer(&t.reader),
            Code::PermissionDenied,
            None,
        ),
        (
            "unknown pet",
            Call::GetPet(pb::GetPetRequest {
                id: "pet_doesnotexist".into(),
            }),
            None,
            Code::NotFound,
            None,
        ),
        (
            "SQL injection as a pet id",
            Call::GetPet(pb::GetPetRequest {
                id: "pet_1' OR '1'='1".into(),
            }),
            None,
            Code::NotFound,
            None,
        ),
        (
            "unknown field in the update mask",
            Call::UpdatePet(pb::UpdatePetRequest {
                pet: Some(pb::Pet {
                    id: rex.id.to_string(),
                    name: "Masked".into(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["owner".into()],
                }),
                expected_version: None,
            }),
            all.clone(),
            Code::InvalidArgument,
            None,
        ),
        (
            "stale expected_version",
            Call::UpdatePet(pb::UpdatePetRequest {
                pet: Some(pb::Pet {
                    id: rex.id.to_string(),
                    name: "Stale".into(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["name".into()],
                }),
                expected_version: Some(999),
            }),
            all.clone(),
            Code::Aborted,
            None,
        ),
        (
            "order quantity 0",
            Call::PlaceOrder(pb::PlaceOrderRequest {
                pet_id: rex.id.to_string(),
                quantity: Some(0),
            }),
            all.clone(),
            Code::InvalidArgument,
            Some("quantity"),
        ),
        (
            "order quantity u32::MAX",
            Call::PlaceOrder(pb::PlaceOrderRequest {
                pet_id: rex.id.to_string(),
                quantity: Some(u32::MAX),
            }),
            all.clone(),
            Code::InvalidArgument,
            Some("quantity"),
        ),
        (
            "order for a sold pet",
            Call::PlaceOrder(pb::PlaceOrderRequest {
                pet_id: shelly.id.to_string(),
                quantity: None,
            }),
            all.clone(),
            Code::FailedPrecondition,
            None,
        ),
        (
            "malformed resume token",
            Call::WatchPets(pb::WatchPetsRequest {
                since: Some("zzz".into()),
                ..Default::default()
            }),
            None,
            Code::InvalidArgument,
            None,
        ),
        (
            "resume token of another epoch",
            Call::WatchPets(pb::WatchPetsRequest {
                since: Some(other_epoch_token(head)),
                ..Default::default()
            }),
            None,
            Code::OutOfRange,
            None,
        ),
        (
            "unknown event type",
            Call::WatchPets(pb::WatchPetsRequest {
                types: vec!["pet.flying".into()],
                ..Default::default()
            }),
            None,
            Code::InvalidArgument,
            None,
        ),
        (
            "chat room with SQL injection",
            Call::Chat(pb::ChatSend {
                room: "support'; DROP TABLE chat;--".into(),
                text: "hi".into(),
            }),
            all.clone(),
            Code::InvalidArgument,
            None,
        ),
        (
            "malformed protobuf",
            Call::Raw {
                path: create_path,
                content_type: grpc_ct,
                body: grpc_frame(&[0x0a, 0x7f, 0x01], false),
            },
            None,
            Code::Internal,
            None,
        ),
        (
            "invalid UTF-8 in a string field",
            Call::Raw {
                path: create_path,
                content_type: grpc_ct,
                body: grpc_frame(&create_with_bad_utf8, false),
            },
            None,
            Code::Internal,
            None,
        ),
        (
            "5 MiB message",
            Call::Raw {
                path: create_path,
                content_type: grpc_ct,
                body: grpc_frame(&big_species, false),
            },
            None,
            Code::OutOfRange,
            None,
        ),
        (
            "compressed flag without grpc-encoding",
            Call::Raw {
                path: create_path,
                content_type: grpc_ct,
                body: grpc_frame(&proto_bytes(1, b"Rex"), true),
            },
            None,
            Code::Internal,
            None,
        ),
    ];

    let mut matrix = Matrix::new("gRPC", &s.store).await;
    for (name, call, auth, code, field) in rows {
        let answer =
            match within(name, grpc_call(&channel, &h2, &addr, call, auth.as_deref())).await {
                Ok(()) => Err(format!("expected {code:?}, the call succeeded")),
                Err(status) => {
                    let mut check = expect_eq("code", status.code(), code)
                        .map_err(|e| format!("{e}: {}", status.message()));
                    if check.is_ok() && status.message().is_empty() {
                        check = Err("the status has no message".into());
                    }
                    if let (Ok(()), Some(field)) = (&check, field) {
                        let fields: Vec<String> = status
                            .get_details_bad_request()
                            .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
                            .unwrap_or_default();
                        if !fields.iter().any(|f| f == field) {
                            check = Err(format!(
                                "expected BadRequest field `{field}`, got {fields:?}"
                            ));
                        }
                    }
                    check
                }
            };
        let follow = async {
            let mut client = pb::pet_service_client::PetServiceClient::new(channel.clone());
            let got = client
                .get_pet(pb::GetPetRequest {
                    id: rex.id.to_string(),
                })
                .await
                .map_err(|e| e.to_string())?;
            expect_eq("pet name", got.into_inner().name, rex.name.clone())
        }
        .await;
        matrix.row(&s.store, name, answer, follow).await;
    }
    matrix.finish(GRPC_ROWS);
    s.shutdown().await.unwrap();
}
