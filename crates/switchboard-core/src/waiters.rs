//! Lets a request wait briefly for the dispatcher to hand its message to the provider, so the
//! response can already say `sent`. Sharded to keep lock hold times short under load.

use std::collections::HashMap;
use std::sync::Mutex;

use switchboard_domain::{ErrorType, MessageId, Timestamp};
use tokio::sync::oneshot;

/// What the dispatcher reports to a waiting request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DispatchNews {
    /// The provider took it.
    Sent {
        /// When.
        at: Timestamp,
        /// The provider's id.
        provider_message_id: String,
    },
    /// It failed for good.
    Failed {
        /// Classification.
        error_type: ErrorType,
        /// Description.
        message: String,
        /// When.
        at: Timestamp,
    },
}

const SHARDS: usize = 32;

/// Waiting requests by message id.
#[derive(Debug)]
pub struct Waiters {
    shards: Vec<Mutex<HashMap<MessageId, oneshot::Sender<DispatchNews>>>>,
}

impl Default for Waiters {
    fn default() -> Self {
        Self { shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect() }
    }
}

impl Waiters {
    fn shard(&self, id: MessageId) -> &Mutex<HashMap<MessageId, oneshot::Sender<DispatchNews>>> {
        let n = id.as_uuid().as_u128() as usize;
        &self.shards[n % SHARDS]
    }

    /// Registers interest in a message; the receiver gets its news.
    pub fn register(&self, id: MessageId) -> oneshot::Receiver<DispatchNews> {
        let (tx, rx) = oneshot::channel();
        if let Ok(mut shard) = self.shard(id).lock() {
            shard.insert(id, tx);
        }
        rx
    }

    /// Withdraws interest.
    pub fn cancel(&self, id: MessageId) {
        if let Ok(mut shard) = self.shard(id).lock() {
            shard.remove(&id);
        }
    }

    /// Tells a waiting request, if there is one.
    pub fn tell(&self, id: MessageId, news: DispatchNews) {
        let waiter = self.shard(id).lock().ok().and_then(|mut s| s.remove(&id));
        if let Some(tx) = waiter {
            // The request may have stopped waiting; that is fine.
            let _ = tx.send(news);
        }
    }
}
