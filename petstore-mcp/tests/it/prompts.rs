//! The `recommend_pet` prompt.

use petstore_mcp::McpConfig;
use rmcp::model::{GetPromptRequestParams, Role};
use serde_json::json;

use crate::support::{Http, Protocol, http_client, object, store, within};

#[tokio::test]
async fn recommend_pet_is_listed_and_embeds_the_available_catalogue() {
    let store = store().await;
    let http = Http::start(&store, McpConfig::default()).await;
    for protocol in [Protocol::Current, Protocol::Legacy] {
        let (client, _) = http_client(&http.url(), protocol, None).await;
        let prompts = within(client.list_all_prompts()).await.unwrap();
        assert_eq!(prompts.len(), 1);
        let prompt = &prompts[0];
        assert_eq!(prompt.name, "recommend_pet");
        assert!(prompt.description.is_some());
        let arguments = prompt.arguments.as_ref().unwrap();
        assert_eq!(arguments.len(), 1);
        assert_eq!(arguments[0].name, "household");
        assert_eq!(arguments[0].required, Some(true));

        let household = "Two adults and a toddler in a flat, out at work all day";
        let request = GetPromptRequestParams::new("recommend_pet")
            .with_arguments(object(json!({ "household": household })));
        let result = within(client.get_prompt(request)).await.unwrap();
        assert_eq!(result.messages.len(), 1);
        let message = &result.messages[0];
        assert_eq!(message.role, Role::User);
        let text = &message.content.as_text().expect("text content").text;
        assert!(text.contains(household), "{text}");
        // Available pets with their ids; the sold turtle is not offered.
        for name in ["Rex", "Bella", "Milo", "Luna", "Kiwi", "Nemo", "Thumper"] {
            assert!(
                text.contains(&format!("- {name} (id `pet_")),
                "{name} in {text}"
            );
        }
        assert!(!text.contains("Shelly"), "{text}");
        assert!(text.contains("place_order"));
        client.cancel().await.unwrap();
    }
}

#[tokio::test]
async fn recommend_pet_needs_a_household_and_unknown_prompts_are_errors() {
    let store = store().await;
    let http = Http::start(&store, McpConfig::default()).await;
    let (client, _) = http_client(&http.url(), Protocol::Current, None).await;
    for (arguments, expected) in [
        (json!({}), "invalid `household`: is required"),
        (
            json!({"household": "   "}),
            "invalid `household`: must not be empty",
        ),
        (
            json!({"household": 42}),
            "invalid `household`: must be a string",
        ),
    ] {
        let request =
            GetPromptRequestParams::new("recommend_pet").with_arguments(object(arguments));
        let err = within(client.get_prompt(request))
            .await
            .expect_err(expected);
        assert!(err.to_string().contains(expected), "{err}");
    }
    let err = within(client.get_prompt(GetPromptRequestParams::new("adopt")))
        .await
        .expect_err("unknown prompt");
    assert!(err.to_string().contains("unknown prompt `adopt`"), "{err}");
    client.cancel().await.unwrap();
}
