//! Typed ids of webhook endpoints and delivery attempts, shaped like every id of the
//! workspace (core's `prefixed_id!`).

petstore_core::prefixed_id!(
    /// Identifies a webhook endpoint (`ep_...`).
    EndpointId, "ep_", "webhook endpoint"
);

petstore_core::prefixed_id!(
    /// Identifies a delivery attempt (`atm_...`).
    AttemptId, "atm_", "delivery attempt"
);
