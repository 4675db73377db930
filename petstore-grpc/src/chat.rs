//! `petstore.v1.ChatService`: bidirectional chat over the core event log.

use futures_util::{Stream, StreamExt as _, future, stream};
use petstore_core::{
    Channel, Error, EventData, EventFilter, NewChatMessage, PetStore, is_room_name,
};
use tonic::{Request, Response, Status, Streaming};

use crate::auth::principal;
use crate::convert;
use crate::error::status;
use crate::pb;
use crate::streams::{Guarded, Streams};

/// Request metadata naming the rooms to receive (comma separated; default: all).
const ROOMS: &str = "chat-rooms";
/// Request metadata carrying a resume token.
const SINCE: &str = "since";

#[derive(Debug, Clone)]
pub(crate) struct ChatApi {
    service: PetStore,
    streams: Streams,
}

impl ChatApi {
    pub(crate) fn new(store: PetStore, streams: Streams) -> Self {
        Self {
            service: store,
            streams,
        }
    }
}

fn metadata_str<'a, T>(request: &'a Request<T>, key: &str) -> Result<Option<&'a str>, Error> {
    match request.metadata().get(key) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .map(Some)
            .map_err(|_| Error::invalid_field(key, "must be ASCII")),
    }
}

fn channels(rooms: Option<&str>) -> Result<Vec<Channel>, Error> {
    let rooms: Vec<&str> = rooms
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .collect();
    if rooms.is_empty() {
        return Ok(vec![Channel::Chat]);
    }
    rooms
        .into_iter()
        .map(|room| {
            if is_room_name(room) {
                Ok(Channel::ChatRoom(room.to_owned()))
            } else {
                Err(Error::invalid_field(
                    ROOMS,
                    format!(
                        "`{room}` is not a room name (1 to 64 characters of a-z, 0-9, `_`, `-`)"
                    ),
                ))
            }
        })
        .collect()
}

#[tonic::async_trait]
impl pb::chat_service_server::ChatService for ChatApi {
    type ChatStream = Guarded<pb::ChatMessage>;

    async fn chat(
        &self,
        request: Request<Streaming<pb::ChatSend>>,
    ) -> Result<Response<Self::ChatStream>, Status> {
        let who = principal(&request);
        // Chat needs a token: checked before the request's metadata is read.
        self.service
            .authorize_channel(&who, &Channel::Chat)
            .await
            .map_err(status)?;
        let channels = channels(metadata_str(&request, ROOMS).map_err(status)?).map_err(status)?;
        let since =
            convert::since(metadata_str(&request, SINCE).map_err(status)?).map_err(status)?;
        // Subscribing before the response goes out: nothing posted after the call is
        // open can be missed.
        let messages = self
            .service
            .subscribe(&who, since, EventFilter::channels(channels))
            .await
            .map_err(status)?
            .filter_map(|item| {
                future::ready(match item {
                    Ok(event) => match event.data() {
                        EventData::ChatMessage(m) => {
                            Some(Ok(convert::chat_message(m, event.offset())))
                        }
                        _ => None,
                    },
                    Err(e) => Some(Err(status(e))),
                })
            });

        let metadata = request.metadata().clone();
        let posts = posts(self.service.clone(), who, request.into_inner());
        // Both directions live in the one response stream: when the client goes away the
        // stream is dropped, and with it the subscription and the reading of its sends.
        let both = stream::select(messages, posts);
        Ok(Response::new(self.streams.guard(both, &metadata)))
    }
}

/// Posts every message the client sends; yields only the error that ends the call.
fn posts(
    store: PetStore,
    who: petstore_core::Principal,
    inbound: Streaming<pb::ChatSend>,
) -> impl Stream<Item = Result<pb::ChatMessage, Status>> + Send + 'static {
    inbound
        .then(move |item| {
            let (store, who) = (store.clone(), who.clone());
            async move {
                let send = item?;
                store
                    .post_chat(
                        &who,
                        NewChatMessage {
                            room: send.room,
                            text: send.text,
                        },
                    )
                    .await
                    .map_err(status)?;
                Ok(())
            }
        })
        .filter_map(|posted: Result<(), Status>| future::ready(posted.err().map(Err)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rooms_metadata_names_channels() {
        assert_eq!(channels(None).unwrap(), vec![Channel::Chat]);
        assert_eq!(
            channels(Some("support, sales")).unwrap(),
            vec![
                Channel::ChatRoom("support".into()),
                Channel::ChatRoom("sales".into())
            ]
        );
        assert!(channels(Some("Bad Room")).is_err());
    }
}
