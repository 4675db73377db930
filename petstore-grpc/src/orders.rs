//! `petstore.v1.StoreService`: orders, payments, inventory.

use petstore_core::{Channel, Error, NewOrder, OrderId, PaymentRequest, PetStore, Scope};
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status};

use crate::auth::principal;
use crate::convert;
use crate::error::status;
use crate::pb;
use crate::pets::pet_id;
use crate::streams::{Guarded, Streams};

/// The metadata key that makes `PlaceOrder` safe to retry.
const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// Response metadata set when `PlaceOrder` returned an earlier order.
const REPLAYED: &str = "idempotent-replayed";

#[derive(Debug, Clone)]
pub(crate) struct StoreApi {
    service: PetStore,
    streams: Streams,
}

impl StoreApi {
    pub(crate) fn new(store: PetStore, streams: Streams) -> Self {
        Self {
            service: store,
            streams,
        }
    }
}

fn order_id(field: &str, id: &str) -> Result<OrderId, Status> {
    if id.is_empty() {
        return Err(status(Error::invalid_field(field, "is required")));
    }
    id.parse().map_err(status)
}

#[tonic::async_trait]
impl pb::store_service_server::StoreService for StoreApi {
    async fn place_order(
        &self,
        request: Request<pb::PlaceOrderRequest>,
    ) -> Result<Response<pb::Order>, Status> {
        let who = principal(&request);
        // Authenticate and authorise before reading the request (see `create_pet`).
        who.require(Scope::OrdersWrite).map_err(status)?;
        let key = match request.metadata().get(IDEMPOTENCY_KEY) {
            None => None,
            Some(v) => Some(v.to_str().map_err(|_| {
                status(Error::invalid_field(
                    IDEMPOTENCY_KEY,
                    "must be 1 to 255 printable ASCII characters",
                ))
            })?),
        };
        let r = request.get_ref();
        let new = NewOrder {
            pet_id: pet_id("pet_id", &r.pet_id)?,
            quantity: r.quantity.unwrap_or(1),
        };
        let placed = self
            .service
            .place_order(&who, new, key)
            .await
            .map_err(status)?;
        let mut response = Response::new(convert::order(&placed.order));
        if placed.replayed {
            response
                .metadata_mut()
                .insert(REPLAYED, MetadataValue::from_static("true"));
        }
        Ok(response)
    }

    async fn get_order(
        &self,
        request: Request<pb::GetOrderRequest>,
    ) -> Result<Response<pb::Order>, Status> {
        let who = principal(&request);
        let id = order_id("id", &request.get_ref().id)?;
        let order = self.service.order(&who, &id).await.map_err(status)?;
        Ok(Response::new(convert::order(&order)))
    }

    async fn cancel_order(
        &self,
        request: Request<pb::CancelOrderRequest>,
    ) -> Result<Response<pb::Order>, Status> {
        let who = principal(&request);
        who.require(Scope::OrdersWrite).map_err(status)?;
        let id = order_id("id", &request.get_ref().id)?;
        let order = self.service.cancel_order(&who, &id).await.map_err(status)?;
        Ok(Response::new(convert::order(&order)))
    }

    async fn pay_order(
        &self,
        request: Request<pb::PayOrderRequest>,
    ) -> Result<Response<pb::Payment>, Status> {
        let who = principal(&request);
        who.require(Scope::OrdersWrite).map_err(status)?;
        let r = request.get_ref();
        let id = order_id("id", &r.id)?;
        let mut payment = PaymentRequest::default();
        if let Some(token) = &r.payment_token {
            payment.token = token.clone();
        }
        let payment = self
            .service
            .pay_order(&who, &id, payment)
            .await
            .map_err(status)?;
        Ok(Response::new(convert::payment(&payment)))
    }

    async fn get_inventory(
        &self,
        request: Request<pb::GetInventoryRequest>,
    ) -> Result<Response<pb::Inventory>, Status> {
        let who = principal(&request);
        let snapshot = self.service.inventory(&who).await.map_err(status)?;
        Ok(Response::new(convert::inventory(
            &snapshot.items,
            snapshot.position,
        )))
    }

    type WatchOrdersStream = Guarded<pb::Event>;

    async fn watch_orders(
        &self,
        request: Request<pb::WatchOrdersRequest>,
    ) -> Result<Response<Self::WatchOrdersStream>, Status> {
        let who = principal(&request);
        let r = request.get_ref();
        let since = convert::since(r.since.as_deref()).map_err(status)?;
        let channel = match r.order_id.as_deref() {
            None | Some("") => Channel::Orders,
            Some(id) => Channel::Order(
                id.parse::<OrderId>()
                    .map_err(|_| status(Error::invalid_field("order_id", "is not an order id")))?,
            ),
        };
        let events = self
            .streams
            .watch(
                &self.service,
                &who,
                since,
                &r.types,
                channel,
                request.metadata(),
            )
            .await?;
        Ok(Response::new(events))
    }
}
