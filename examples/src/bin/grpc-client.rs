//! Run with: cargo run -p petstore-examples --bin grpc-client [-- --grpc http://127.0.0.1:50051]
//! against a running server (`cargo run -p petstore-server` in another terminal).
//!
//! gRPC with the generated tonic client: `GetPet`, the server-streaming `ListPets`,
//! then `WatchPets` from the listing's position while a pet is created.

use anyhow::Context as _;
use clap::Parser;
use pb::pet_service_client::PetServiceClient;
use petstore_examples::client::ClientArgs;
use petstore_grpc::pb;
use tonic::Request;
use tonic::metadata::MetadataValue;

#[derive(Debug, Parser)]
#[command(about = "Call the gRPC PetService")]
struct Cli {
    #[command(flatten)]
    client: ClientArgs,
    /// gRPC endpoint.
    #[arg(long, env = "PETSTORE_GRPC", default_value = "http://127.0.0.1:50051")]
    grpc: String,
    /// Exit after this many watched events (default: 1).
    #[arg(long, default_value_t = 1)]
    count: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let token = cli.client.token(&reqwest::Client::new()).await?;
    let bearer: MetadataValue<_> = format!("Bearer {token}").parse()?;
    let channel = tonic::transport::Endpoint::from_shared(cli.grpc.clone())?
        .connect()
        .await
        .with_context(|| format!("connecting to {}", cli.grpc))?;
    let mut pets = PetServiceClient::new(channel);

    // Server streaming: every pet, one message each.
    let response = pets.list_pets(pb::ListPetsRequest::default()).await?;
    let position = response
        .metadata()
        .get("petstore-position")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut stream = response.into_inner();
    let mut first = None;
    println!("ListPets (streaming):");
    while let Some(pet) = stream.message().await? {
        println!("  {:<36} {:<10} {}", pet.id, pet.name, pet.species);
        first.get_or_insert(pet.id);
    }

    if let Some(id) = first {
        let pet = pets
            .get_pet(pb::GetPetRequest { id: id.clone() })
            .await?
            .into_inner();
        println!(
            "GetPet {id}: {} the {} (version {})",
            pet.name, pet.species, pet.version
        );
    }

    // Watch from the listing's position, then cause an event.
    let watch = pets
        .watch_pets(pb::WatchPetsRequest {
            since: position.clone(),
            ..Default::default()
        })
        .await?;
    let mut events = watch.into_inner();
    println!("WatchPets since {}:", position.as_deref().unwrap_or("now"));
    let mut create = Request::new(pb::CreatePetRequest {
        name: "Pixel".into(),
        species: "cat".into(),
        price: Some(pb::Money {
            amount: "120.00".into(),
            currency: "USD".into(),
        }),
        ..Default::default()
    });
    create.metadata_mut().insert("authorization", bearer);
    let created = pets.create_pet(create).await?.into_inner();
    println!("CreatePet -> {}", created.id);
    for _ in 0..cli.count {
        let Some(event) = events.message().await? else {
            break;
        };
        println!(
            "  {:<20} subject={} offset={}",
            event.r#type, event.subject, event.offset
        );
    }
    Ok(())
}
