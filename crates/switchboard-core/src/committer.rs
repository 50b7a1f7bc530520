//! The group committer: many concurrent send requests share one transaction and one fsync.
//!
//! Requests put their message on a bounded queue and wait for its outcome. A writer task takes
//! whatever has gathered (up to `max_batch`) and admits it with one [`Store::accept`] call:
//! under light load a group is one message and nothing waits; under heavy load groups grow
//! while the previous commit is on its way to disk. A response is sent only after its group
//! has committed. If a group fails as a whole, its messages are retried one by one so that one
//! bad message cannot fail its neighbours.
//!
//! A store that groups concurrent admissions itself (SQLite's writer, see
//! [`Backend::groups_admissions`](switchboard_storage::Backend::groups_admissions)) is called straight from the request, without the queue and
//! its writer tasks: a hand-off fewer on every send.
//!
//! Messages the admitting node dispatches itself are stored already claimed, and handed to the
//! local dispatcher straight from here, without a claim round trip to the database.

use std::sync::Arc;
use std::time::Instant;

use switchboard_records::{AcceptOutcome, MessageRecord, NewMessage};
use switchboard_storage::Store;
use tokio::sync::{Mutex, mpsc, oneshot};

/// Why a message could not be admitted at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CommitError {
    /// The database failed; nothing was written for the message.
    #[error("storage unavailable")]
    Storage,
    /// The server is shutting down or overloaded.
    #[error("server busy")]
    Busy,
}

/// One request's messages: one, or every recipient of a multi-recipient request, which must be
/// admitted in one call so that it is all or nothing.
struct Job {
    messages: Vec<NewMessage>,
    reply: Reply,
}

type Reply = oneshot::Sender<Result<Vec<AcceptOutcome>, CommitError>>;

/// The sending side of the group committer.
#[derive(Clone)]
pub struct Committer {
    route: Route,
}

#[derive(Clone)]
enum Route {
    /// Through the queue to the writer tasks, which group.
    Queue(mpsc::Sender<Job>),
    /// Straight to the store, which groups.
    Direct { store: Arc<dyn Store>, dispatch: Option<mpsc::UnboundedSender<MessageRecord>> },
}

impl std::fmt::Debug for Committer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Committer").finish_non_exhaustive()
    }
}

impl Committer {
    /// Starts `writers` writer tasks over `store` (none if the store groups admissions
    /// itself). Queued messages stored claimed for their first attempt go to `dispatch`, the
    /// local dispatcher.
    pub fn start(
        store: Arc<dyn Store>,
        writers: usize,
        max_batch: usize,
        queue: usize,
        dispatch: Option<mpsc::UnboundedSender<MessageRecord>>,
    ) -> Self {
        if store.backend().groups_admissions() {
            return Self { route: Route::Direct { store, dispatch } };
        }
        let (tx, rx) = mpsc::channel::<Job>(queue.max(1));
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..writers.max(1) {
            let (store, rx, dispatch) = (store.clone(), rx.clone(), dispatch.clone());
            tokio::spawn(async move { writer(store, rx, max_batch.max(1), dispatch).await });
        }
        Self { route: Route::Queue(tx) }
    }

    /// Admits one message; returns when its group has committed.
    pub async fn submit(&self, message: NewMessage) -> Result<AcceptOutcome, CommitError> {
        self.submit_all(vec![message]).await?.pop().ok_or(CommitError::Storage)
    }

    /// Admits the messages of one request together, in one transaction; returns one outcome
    /// per message, in order, when its group has committed.
    pub async fn submit_all(&self, messages: Vec<NewMessage>) -> Result<Vec<AcceptOutcome>, CommitError> {
        match &self.route {
            Route::Queue(tx) => {
                let (reply, rx) = oneshot::channel();
                tx.send(Job { messages, reply }).await.map_err(|_| CommitError::Busy)?;
                rx.await.map_err(|_| CommitError::Busy)?
            }
            Route::Direct { store, dispatch } => {
                let started = Instant::now();
                let outcomes = store.accept(&messages).await.map_err(|e| {
                    tracing::error!(error = %e, "admitting a request failed");
                    CommitError::Storage
                })?;
                metrics::histogram!("switchboard_commit_seconds").record(started.elapsed().as_secs_f64());
                for outcome in &outcomes {
                    hand_over(dispatch, outcome);
                }
                Ok(outcomes)
            }
        }
    }
}

/// Hands a committed, claimed message to the local dispatcher.
fn hand_over(dispatch: &Option<mpsc::UnboundedSender<MessageRecord>>, outcome: &AcceptOutcome) {
    if let (Some(tx), AcceptOutcome::Queued(m)) = (dispatch, outcome)
        && m.attempts == 1
    {
        // A closed dispatcher leaves the message to its lease and the claim loop of any node.
        let _ = tx.send(m.clone());
    }
}

async fn writer(
    store: Arc<dyn Store>,
    rx: Arc<Mutex<mpsc::Receiver<Job>>>,
    max_batch: usize,
    dispatch: Option<mpsc::UnboundedSender<MessageRecord>>,
) {
    let mut messages: Vec<NewMessage> = Vec::with_capacity(max_batch);
    // Each request's reply and how many of the group's messages are its.
    let mut replies: Vec<(Reply, usize)> = Vec::with_capacity(max_batch);
    let take = |job: Job, messages: &mut Vec<NewMessage>, replies: &mut Vec<(Reply, usize)>| {
        replies.push((job.reply, job.messages.len()));
        messages.extend(job.messages);
    };
    loop {
        {
            let mut rx = rx.lock().await;
            let Some(first) = rx.recv().await else { return };
            take(first, &mut messages, &mut replies);
            while messages.len() < max_batch {
                match rx.try_recv() {
                    Ok(job) => take(job, &mut messages, &mut replies),
                    Err(_) => break,
                }
            }
        }
        let started = Instant::now();
        let result = store.accept(&messages).await;
        metrics::histogram!("switchboard_commit_group_size").record(messages.len() as f64);
        metrics::histogram!("switchboard_commit_seconds").record(started.elapsed().as_secs_f64());
        match result {
            Ok(outcomes) => {
                for outcome in &outcomes {
                    hand_over(&dispatch, outcome);
                }
                let mut outcomes = outcomes.into_iter();
                for (reply, n) in replies.drain(..) {
                    let _ = reply.send(Ok(outcomes.by_ref().take(n).collect()));
                }
                messages.clear();
            }
            Err(e) if replies.len() > 1 => {
                tracing::warn!(error = %e, size = messages.len(), "group commit failed; admitting its requests one by one");
                let mut rest = messages.drain(..);
                for (reply, n) in replies.drain(..) {
                    let own: Vec<NewMessage> = rest.by_ref().take(n).collect();
                    let outcome = store.accept(&own).await;
                    if let Ok(outcomes) = &outcome {
                        for o in outcomes {
                            hand_over(&dispatch, o);
                        }
                    }
                    let _ = reply.send(outcome.map_err(|e| {
                        tracing::error!(error = %e, "admitting a request failed");
                        CommitError::Storage
                    }));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "admitting a request failed");
                messages.clear();
                for (reply, _) in replies.drain(..) {
                    let _ = reply.send(Err(CommitError::Storage));
                }
            }
        }
    }
}
