//! Inbound commands on `{prefix}commands/...` and their replies.

use petstore_core::{
    Error, ErrorKind, FieldError, NewOrder, PetId, PetStatus, PetStore, Principal, Result,
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::topics::{CommandTopic, command_topic};

/// `{prefix}commands/pets/{id}/status`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SetPetStatus {
    status: PetStatus,
}

/// `{prefix}commands/orders`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlaceOrder {
    pet_id: String,
    #[serde(default = "one")]
    quantity: u32,
    #[serde(default)]
    idempotency_key: Option<String>,
}

fn one() -> u32 {
    1
}

/// The reply code of an error: the one place where core errors become MQTT replies.
pub(crate) fn reply_code(kind: ErrorKind) -> &'static str {
    // The core codes are already stable snake_case names; MQTT has no status numbers
    // of its own for application errors, so the reply carries them as they are.
    kind.code()
}

/// The reply payload: `{"ok":true,"result":...}` or
/// `{"ok":false,"error":{"code","message","fields":[{"field","message"}]}}`.
pub(crate) fn reply(result: &Result<Value>) -> Value {
    match result {
        Ok(value) => json!({ "ok": true, "result": value }),
        Err(e) => json!({
            "ok": false,
            "error": {
                "code": reply_code(e.kind()),
                "message": e.message(),
                "fields": e.field_errors(),
            }
        }),
    }
}

fn parse<T: for<'de> Deserialize<'de>>(payload: &[u8]) -> Result<T> {
    serde_json::from_slice(payload).map_err(|e| {
        let field = FieldError::from_serde("", &e.to_string());
        if !e.is_data() {
            Error::new(
                ErrorKind::InvalidInput,
                format!("the payload is not JSON: {e}"),
            )
        } else if field.field.is_empty() {
            Error::new(
                ErrorKind::InvalidInput,
                format!("invalid command payload: {}", field.message),
            )
        } else {
            Error::invalid(vec![field])
        }
    })
}

/// The caller of a command: the principal of the token in its `authorization` user
/// properties (`Bearer <jwt>`, verified by the core), anonymous without one. The broker
/// does not tell the bridge who published a message, so the command itself carries
/// its caller's credential, the same way on every broker.
pub(crate) fn caller(store: &PetStore, authorization: &[String]) -> Result<Principal> {
    match authorization {
        [] => Ok(Principal::anonymous()),
        [header] => store.authenticate_header(Some(header)),
        // Like two `Authorization` headers: which one would count is ambiguous.
        _ => Err(Error::new(
            ErrorKind::Unauthenticated,
            "more than one `authorization` user property",
        )),
    }
}

/// Runs the command published on `topic` as `who`; `None` when the topic is not a
/// command. Anonymous callers get `unauthenticated` whatever the command; the core
/// checks each command's scope.
pub(crate) async fn run(
    store: &PetStore,
    who: &Principal,
    prefix: &str,
    topic: &str,
    payload: &[u8],
) -> Option<Result<Value>> {
    let command = command_topic(prefix, topic)?;
    if !who.is_authenticated() {
        return Some(Err(Error::new(
            ErrorKind::Unauthenticated,
            "a command needs a bearer token: the MQTT 5 user property `authorization: Bearer <jwt>`",
        )));
    }
    Some(match command {
        CommandTopic::SetPetStatus(id) => set_pet_status(store, who, id, payload).await,
        CommandTopic::PlaceOrder => place_order(store, who, payload).await,
        CommandTopic::Unknown => Err(Error::new(
            ErrorKind::NotFound,
            format!(
                "unknown command topic `{topic}` (known: {prefix}commands/pets/{{id}}/status, {prefix}commands/orders)"
            ),
        )),
    })
}

async fn set_pet_status(
    store: &PetStore,
    who: &Principal,
    id: &str,
    payload: &[u8],
) -> Result<Value> {
    let id: PetId = id.parse()?;
    let SetPetStatus { status } = parse(payload)?;
    let pet = store.set_pet_status(who, &id, status).await?;
    Ok(serde_json::to_value(pet).unwrap_or_default())
}

async fn place_order(store: &PetStore, who: &Principal, payload: &[u8]) -> Result<Value> {
    let command: PlaceOrder = parse(payload)?;
    let new = NewOrder {
        pet_id: command.pet_id.parse()?,
        quantity: command.quantity,
    };
    let placed = store
        .place_order(who, new, command.idempotency_key.as_deref())
        .await?;
    let mut value = serde_json::to_value(placed.order).unwrap_or_default();
    if let Some(obj) = value.as_object_mut() {
        obj.insert("replayed".to_owned(), placed.replayed.into());
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_payloads_name_the_field() {
        let e = parse::<SetPetStatus>(br#"{"status":"flying"}"#).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        let e = parse::<PlaceOrder>(br#"{"pet_id":"pet_1","colour":"red"}"#).unwrap_err();
        assert_eq!(e.field_errors()[0].field, "colour");
        let e = parse::<PlaceOrder>(br#"{"quantity":1}"#).unwrap_err();
        assert_eq!(e.field_errors()[0].field, "pet_id");
        // Said once: the field is named by the field, not again by its message.
        assert_eq!(e.field_errors()[0].message, "is required");
        assert_eq!(e.message(), "invalid `pet_id`: is required");
        let e = parse::<PlaceOrder>(b"not json").unwrap_err();
        assert!(e.field_errors().is_empty());
    }

    /// No `authorization` property is an anonymous caller (whom `run` then refuses with
    /// its own message); one is verified; two are refused as ambiguous.
    #[test]
    fn the_caller_is_who_the_one_authorization_property_names() {
        let store = PetStore::in_memory();
        let anonymous = caller(&store, &[]).expect("no property is no error");
        assert!(!anonymous.is_authenticated());
        let token = store
            .tokens()
            .issue("carol", [petstore_core::Scope::OrdersWrite])
            .unwrap()
            .access_token;
        let bearer = format!("Bearer {token}");
        let carol = caller(&store, std::slice::from_ref(&bearer)).unwrap();
        assert_eq!(carol.subject(), Some("carol"));
        let twice = caller(&store, &[bearer.clone(), bearer]).unwrap_err();
        assert_eq!(twice.kind(), ErrorKind::Unauthenticated);
        assert_eq!(
            twice.message(),
            "more than one `authorization` user property"
        );
    }

    #[test]
    fn replies_carry_code_message_and_fields() {
        let err = reply(&Err(Error::invalid_field("quantity", "too many")));
        assert_eq!(err["ok"], false);
        assert_eq!(err["error"]["code"], "invalid_input");
        assert_eq!(err["error"]["fields"][0]["field"], "quantity");
        let ok = reply(&Ok(json!({"id": 1})));
        assert_eq!(ok, json!({"ok": true, "result": {"id": 1}}));
    }
}
