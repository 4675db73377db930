//! Shared pieces of the Pet Store example binaries.
