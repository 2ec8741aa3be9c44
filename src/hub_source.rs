//! The in-process record stream: a DNS replica in the same process as the publisher (`roster local`)
//! follows the hub directly, with the same frames as over HTTP.

use futures_util::StreamExt;
use roster_controller::Hub;
use std::sync::Arc;

use roster_dns::ZoneStore;
use roster_dns::subscriber::{FrameSource, FrameStream};
use tokio::sync::broadcast::error::RecvError;

pub struct HubSource(pub Hub);

#[async_trait::async_trait]
impl FrameSource for HubSource {
    async fn connect(&mut self, from: Option<(u64, u64)>, _: &Arc<ZoneStore>) -> Result<FrameStream, String> {
        let (catch_up, live) = self.0.subscribe(from);
        let live = futures_util::stream::unfold(live, |mut live| async move {
            match live.recv().await {
                Ok(published) => Some((Ok(published.frame.clone().into()), live)),
                Err(RecvError::Lagged(missed)) => Some((Err(format!("fell {missed} frames behind")), live)),
                Err(RecvError::Closed) => None,
            }
        });
        Ok(Box::pin(futures_util::stream::iter(catch_up.into_iter().map(|frame| Ok(frame.into()))).chain(live)))
    }
}
