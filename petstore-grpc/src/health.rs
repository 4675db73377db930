//! The standard health service (`grpc.health.v1.Health`), whose `Watch` streams end
//! with NOT_SERVING when the server shuts down (an open watch would otherwise hold
//! the graceful drain forever).

use tonic::{Request, Response, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_server::Health;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tonic_health::server::{HealthReporter, HealthService};

use crate::streams::{Guarded, Streams};

#[derive(Debug)]
pub(crate) struct DrainingHealth {
    inner: HealthService,
    streams: Streams,
}

impl DrainingHealth {
    pub(crate) fn new(reporter: HealthReporter, streams: Streams) -> Self {
        Self {
            inner: HealthService::from_health_reporter(reporter),
            streams,
        }
    }
}

#[tonic::async_trait]
impl Health for DrainingHealth {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        self.inner.check(request).await
    }

    type WatchStream = Guarded<HealthCheckResponse>;

    async fn watch(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let statuses = self.inner.watch(request).await?.into_inner();
        let farewell = HealthCheckResponse {
            status: ServingStatus::NotServing.into(),
        };
        Ok(Response::new(
            self.streams.guard_quietly(statuses, Ok(farewell)),
        ))
    }
}
