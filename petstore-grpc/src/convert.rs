//! Mapping between protobuf messages and core types. Only shapes change here; every
//! domain rule stays in `petstore-core`.

use petstore_core::chrono::{DateTime, Utc};
use petstore_core::{
    ChatMessage, Error, Event, EventData, FieldError, Inventory, Money, Order, OrderStatus,
    Payment, PaymentStatus, Pet, PetStatus, ResumeToken, TypePattern,
};
use prost_types::Timestamp;

use crate::pb;

pub(crate) fn timestamp(t: DateTime<Utc>) -> Timestamp {
    Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

pub(crate) fn money(m: &Money) -> pb::Money {
    pb::Money {
        amount: m.amount.to_string(),
        currency: m.currency.to_string(),
    }
}

/// Reads a required `Money` field named `field`, collecting what is wrong with it.
pub(crate) fn parse_money(
    field: &str,
    m: Option<&pb::Money>,
    errors: &mut Vec<FieldError>,
) -> Option<Money> {
    let Some(m) = m else {
        errors.push(FieldError::new(field, "is required"));
        return None;
    };
    match Money::from_text(field, &m.amount, &m.currency) {
        Ok(money) => Some(money),
        Err(wrong) => {
            errors.extend(wrong);
            None
        }
    }
}

pub(crate) fn pet_status(s: PetStatus) -> pb::PetStatus {
    match s {
        PetStatus::Available => pb::PetStatus::Available,
        PetStatus::Pending => pb::PetStatus::Pending,
        PetStatus::Sold => pb::PetStatus::Sold,
    }
}

/// Reads a wire `PetStatus`; `Ok(None)` for UNSPECIFIED.
pub(crate) fn parse_pet_status(field: &str, value: i32) -> Result<Option<PetStatus>, FieldError> {
    match pb::PetStatus::try_from(value) {
        Ok(pb::PetStatus::Unspecified) => Ok(None),
        Ok(pb::PetStatus::Available) => Ok(Some(PetStatus::Available)),
        Ok(pb::PetStatus::Pending) => Ok(Some(PetStatus::Pending)),
        Ok(pb::PetStatus::Sold) => Ok(Some(PetStatus::Sold)),
        Err(_) => Err(FieldError::new(
            field,
            format!("unknown pet status {value} (AVAILABLE, PENDING, SOLD)"),
        )),
    }
}

fn order_status(s: OrderStatus) -> pb::OrderStatus {
    match s {
        OrderStatus::Placed => pb::OrderStatus::Placed,
        OrderStatus::Approved => pb::OrderStatus::Approved,
        OrderStatus::Delivered => pb::OrderStatus::Delivered,
        OrderStatus::Cancelled => pb::OrderStatus::Cancelled,
    }
}

fn payment_status(s: PaymentStatus) -> pb::PaymentStatus {
    match s {
        PaymentStatus::Succeeded => pb::PaymentStatus::Succeeded,
        PaymentStatus::Failed => pb::PaymentStatus::Failed,
    }
}

pub(crate) fn pet(p: &Pet) -> pb::Pet {
    pb::Pet {
        id: p.id.to_string(),
        name: p.name.clone(),
        species: p.species.clone(),
        breed: p.breed.clone(),
        age: p.age,
        status: pet_status(p.status).into(),
        tags: p.tags.clone(),
        photo_urls: p.photo_urls.clone(),
        price: Some(money(&p.price)),
        created_at: Some(timestamp(p.created_at)),
        updated_at: Some(timestamp(p.updated_at)),
        version: p.version,
    }
}

pub(crate) fn order(o: &Order) -> pb::Order {
    pb::Order {
        id: o.id.to_string(),
        pet_id: o.pet_id.to_string(),
        quantity: o.quantity,
        total: Some(money(&o.total)),
        status: order_status(o.status).into(),
        customer: o.customer.clone(),
        payment_id: o.payment_id.as_ref().map(ToString::to_string),
        created_at: Some(timestamp(o.created_at)),
        updated_at: Some(timestamp(o.updated_at)),
        version: o.version,
    }
}

pub(crate) fn payment(p: &Payment) -> pb::Payment {
    pb::Payment {
        id: p.id.to_string(),
        order_id: p.order_id.to_string(),
        amount: Some(money(&p.amount)),
        status: payment_status(p.status).into(),
        failure_reason: p.failure_reason.clone(),
        reference: p.reference.clone(),
        created_at: Some(timestamp(p.created_at)),
    }
}

pub(crate) fn inventory(i: &Inventory, position: ResumeToken) -> pb::Inventory {
    pb::Inventory {
        available: i.available,
        pending: i.pending,
        sold: i.sold,
        position: position.to_string(),
    }
}

pub(crate) fn chat_message(m: &ChatMessage, offset: ResumeToken) -> pb::ChatMessage {
    pb::ChatMessage {
        id: m.id.to_string(),
        room: m.room.clone(),
        author: m.author.clone(),
        text: m.text.clone(),
        sent_at: Some(timestamp(m.sent_at)),
        offset: offset.to_string(),
    }
}

/// The envelope and its typed payload.
pub(crate) fn event(e: &Event) -> pb::Event {
    use pb::event::Payload;
    let data = e.data();
    let payload = match data {
        EventData::ChatMessage(m) => Some(Payload::ChatMessage(chat_message(m, e.offset()))),
        data => data
            .pet()
            .map(|p| Payload::Pet(pet(p)))
            .or_else(|| data.order().map(|o| Payload::Order(order(o))))
            .or_else(|| data.payment().map(|p| Payload::Payment(payment(p)))),
    };
    pb::Event {
        id: e.id().to_string(),
        r#type: e.event_type().to_string(),
        source: e.source().to_owned(),
        time: Some(timestamp(e.time())),
        subject: e.subject().to_owned(),
        offset: e.offset().to_string(),
        data: data.to_json(),
        specversion: "1.0".to_owned(),
        datacontenttype: "application/json".to_owned(),
        payload,
        previous_status: data.previous_status().map(str::to_owned),
    }
}

/// Reads an optional resume token; an empty string means none.
pub(crate) fn since(token: Option<&str>) -> Result<Option<ResumeToken>, Error> {
    match token.map(str::trim) {
        None | Some("") => Ok(None),
        Some(t) => t.parse().map(Some),
    }
}

/// Reads event type patterns (`pet.created`, `pet.*`).
pub(crate) fn type_patterns(types: &[String]) -> Result<Vec<TypePattern>, Error> {
    types.iter().map(|t| t.parse()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_round_trips_and_reports_each_bad_part() {
        let m = Money::parse("12.50", petstore_core::Currency::USD).unwrap();
        let mut errors = Vec::new();
        assert_eq!(parse_money("price", Some(&money(&m)), &mut errors), Some(m));
        assert!(errors.is_empty());

        let bad = pb::Money {
            amount: "twelve".into(),
            currency: "usd".into(),
        };
        assert_eq!(parse_money("price", Some(&bad), &mut errors), None);
        let fields: Vec<_> = errors.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(fields, ["price.amount", "price.currency"]);

        errors.clear();
        assert_eq!(parse_money("price", None, &mut errors), None);
        assert_eq!(errors[0].field, "price");
    }

    #[test]
    fn a_bad_resume_token_is_named_once() {
        let e = since(Some("yesterday")).unwrap_err();
        assert_eq!(
            e.message(),
            "invalid `since`: `yesterday` is not a resume token"
        );
        assert_eq!(
            e.field_errors()[0].message,
            "`yesterday` is not a resume token"
        );
    }

    #[test]
    fn timestamps_keep_nanoseconds() {
        let t = DateTime::from_timestamp(1_700_000_000, 123_456_789).unwrap();
        let ts = timestamp(t);
        assert_eq!((ts.seconds, ts.nanos), (1_700_000_000, 123_456_789));
    }

    #[test]
    fn unknown_enum_values_are_field_errors() {
        assert_eq!(parse_pet_status("status", 0).unwrap(), None);
        assert_eq!(
            parse_pet_status("status", 3).unwrap(),
            Some(PetStatus::Sold)
        );
        assert_eq!(parse_pet_status("status", 42).unwrap_err().field, "status");
    }

    #[test]
    fn empty_since_is_none_and_garbage_is_invalid() {
        assert_eq!(since(None).unwrap(), None);
        assert_eq!(since(Some("")).unwrap(), None);
        let t = ResumeToken::new(7, 3);
        assert_eq!(since(Some(&t.to_string())).unwrap(), Some(t));
        assert!(since(Some("nope")).is_err());
    }
}
