//! The `recommend_pet` prompt: matches a household to the available catalogue.

use std::fmt::Write as _;

use petstore_core::{Error, Pet, PetQuery, PetStatus, PetStore, Principal};
use rmcp::model::{
    GetPromptRequestParams, GetPromptResult, ListPromptsResult, Prompt, PromptArgument,
    PromptMessage, Role,
};

pub(crate) const RECOMMEND_PET: &str = "recommend_pet";
const HOUSEHOLD: &str = "household";
const HOUSEHOLD_MAX: usize = 2_000;
/// Pets shown to the assistant; more would crowd its context.
const CATALOGUE_MAX: u32 = 100;

/// `prompts/list`.
pub(crate) fn list() -> ListPromptsResult {
    ListPromptsResult::with_all_items(vec![
        Prompt::new(
            RECOMMEND_PET,
            Some(
                "Recommend pets from the available catalogue for a household, with reasons, \
                 ready to order with the place_order tool.",
            ),
            Some(vec![
                PromptArgument::new(HOUSEHOLD)
                    .with_title("Household")
                    .with_description(
                        "Who the pet will live with and how: people, children, other pets, \
                         home, time, budget, allergies.",
                    )
                    .with_required(true),
            ]),
        )
        .with_title("Recommend a pet"),
    ])
}

/// `prompts/get` of `recommend_pet`: the household's description and the catalogue of
/// available pets, as one user message.
pub(crate) async fn recommend_pet(
    store: &PetStore,
    who: &Principal,
    request: &GetPromptRequestParams,
) -> petstore_core::Result<GetPromptResult> {
    let household = household(request)?;
    let query = PetQuery::default()
        .status(PetStatus::Available)
        .limit(CATALOGUE_MAX);
    let page = store.pets(who, &query).await?;
    let mut text = format!(
        "I am looking for a pet from the Pet Store. About my household:\n\n{household}\n\n"
    );
    if page.data.is_empty() {
        text.push_str("No pet is available right now.\n");
    } else {
        text.push_str("These pets are available:\n");
        for pet in &page.data {
            text.push_str(&catalogue_line(pet));
        }
        if page.next_cursor.is_some() {
            let _ = writeln!(
                text,
                "(The first {CATALOGUE_MAX} available pets; the search_pets tool finds more.)"
            );
        }
    }
    text.push_str(
        "\nRecommend up to three of these pets for my household, best match first, and \
         say why each fits and what to watch out for. Recommend only pets from this list, \
         by name and id; if none fits, say so. I can order one with the place_order tool \
         and its pet id.",
    );
    Ok(
        GetPromptResult::new(vec![PromptMessage::new_text(Role::User, text)])
            .with_description("Pet recommendation for a household, from the available catalogue"),
    )
}

fn household(request: &GetPromptRequestParams) -> petstore_core::Result<String> {
    let value = request
        .arguments
        .as_ref()
        .and_then(|args| args.get(HOUSEHOLD));
    let text = match value {
        Some(serde_json::Value::String(text)) => text.trim(),
        Some(_) => return Err(Error::invalid_field(HOUSEHOLD, "must be a string")),
        None => return Err(Error::invalid_field(HOUSEHOLD, "is required")),
    };
    if text.is_empty() {
        return Err(Error::invalid_field(HOUSEHOLD, "must not be empty"));
    }
    if text.chars().count() > HOUSEHOLD_MAX {
        return Err(Error::invalid_field(
            HOUSEHOLD,
            format!("must have at most {HOUSEHOLD_MAX} characters"),
        ));
    }
    Ok(text.to_owned())
}

fn catalogue_line(pet: &Pet) -> String {
    let mut line = format!("- {} (id `{}`): {}", pet.name, pet.id, pet.species);
    if let Some(breed) = &pet.breed {
        let _ = write!(line, ", {breed}");
    }
    if let Some(age) = pet.age {
        let _ = write!(line, ", {age} year{}", if age == 1 { "" } else { "s" });
    }
    if !pet.tags.is_empty() {
        let _ = write!(line, ", tags: {}", pet.tags.join(", "));
    }
    let _ = writeln!(line, "; {}", pet.price);
    line
}
