#![doc = include_str!("../README.md")]

mod auth;
mod call;
mod chat;
mod config;
mod convert;
mod error;
mod health;
mod orders;
mod pets;
mod server;
mod streams;

pub use config::GrpcConfig;
pub use server::GrpcServer;
pub use streams::OpenStreams;

/// The generated protobuf messages, servers and clients of package `petstore.v1`
/// (`pb::pet_service_client::PetServiceClient`, ...).
pub mod pb {
    #![allow(missing_docs, unreachable_pub, clippy::all)]
    tonic::include_proto!("petstore.v1");

    /// The encoded `FileDescriptorSet` of `proto/petstore/v1/petstore.proto` and its
    /// imports: what server reflection serves.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("petstore_descriptor");
}
