//! The .proto is checked against the domain: every field of the core types has its
//! protobuf field, and the enums list the same states.

use std::collections::BTreeSet;

use petstore_core::schemars::{JsonSchema, schema_for};
use petstore_core::{ChatMessage, Order, OrderStatus, Payment, PaymentStatus, Pet, PetStatus};
use petstore_grpc::pb;
use prost::Message as _;
use prost_types::{DescriptorProto, FileDescriptorProto, FileDescriptorSet};

fn petstore_file() -> FileDescriptorProto {
    FileDescriptorSet::decode(pb::FILE_DESCRIPTOR_SET)
        .unwrap()
        .file
        .into_iter()
        .find(|f| f.package() == "petstore.v1")
        .expect("petstore.v1 in the descriptor set")
}

fn message<'a>(file: &'a FileDescriptorProto, name: &str) -> &'a DescriptorProto {
    file.message_type
        .iter()
        .find(|m| m.name() == name)
        .unwrap_or_else(|| panic!("message {name} missing"))
}

fn json_fields<T: JsonSchema>() -> BTreeSet<String> {
    let schema = schema_for!(T);
    schema
        .get("properties")
        .and_then(|p| p.as_object())
        .expect("an object schema")
        .keys()
        .cloned()
        .collect()
}

fn proto_fields(m: &DescriptorProto) -> BTreeSet<String> {
    m.field.iter().map(|f| f.name().to_owned()).collect()
}

#[test]
fn messages_carry_every_domain_field() {
    let file = petstore_file();
    let cases = [
        ("Pet", json_fields::<Pet>(), vec![]),
        ("Order", json_fields::<Order>(), vec![]),
        ("Payment", json_fields::<Payment>(), vec![]),
        ("ChatMessage", json_fields::<ChatMessage>(), vec!["offset"]),
    ];
    for (name, domain, extra) in cases {
        let mut expected = domain;
        expected.extend(extra.into_iter().map(str::to_owned));
        assert_eq!(
            proto_fields(message(&file, name)),
            expected,
            "message {name}"
        );
    }
    let event: BTreeSet<String> = proto_fields(message(&file, "Event"));
    for field in [
        "id",
        "type",
        "source",
        "time",
        "subject",
        "offset",
        "data",
        "specversion",
        "datacontenttype",
    ] {
        assert!(event.contains(field), "Event.{field}");
    }
}

#[test]
fn enums_list_the_domain_states() {
    let file = petstore_file();
    let values = |name: &str| -> Vec<String> {
        file.enum_type
            .iter()
            .find(|e| e.name() == name)
            .unwrap_or_else(|| panic!("enum {name} missing"))
            .value
            .iter()
            .map(|v| v.name().to_owned())
            .collect()
    };
    let expect = |prefix: &str, states: Vec<&str>| -> Vec<String> {
        std::iter::once(format!("{prefix}_UNSPECIFIED"))
            .chain(
                states
                    .into_iter()
                    .map(|s| format!("{prefix}_{}", s.to_ascii_uppercase())),
            )
            .collect()
    };
    assert_eq!(
        values("PetStatus"),
        expect("PET_STATUS", PetStatus::ALL.map(PetStatus::as_str).to_vec())
    );
    assert_eq!(
        values("OrderStatus"),
        expect(
            "ORDER_STATUS",
            OrderStatus::ALL.map(OrderStatus::as_str).to_vec()
        )
    );
    // The core has no list of payment states: take their wire names from serde.
    let payment: Vec<String> = [PaymentStatus::Succeeded, PaymentStatus::Failed]
        .map(|s| {
            serde_json::to_value(s)
                .unwrap()
                .as_str()
                .unwrap()
                .to_owned()
        })
        .to_vec();
    let payment: Vec<&str> = payment.iter().map(String::as_str).collect();
    assert_eq!(values("PaymentStatus"), expect("PAYMENT_STATUS", payment));
}
