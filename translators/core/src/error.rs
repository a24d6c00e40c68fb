//! Backend errors carry where the fault lies and whether a retry can help, so each translator can
//! map them to its own protocol's error codes without string matching.

use thiserror::Error;

/// Whose fault an error is; translators use it to pick a protocol error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorSource {
    /// The request itself is wrong (unknown topic, bad argument).
    Client,
    /// The backend failed or is unavailable.
    Backend,
    /// A bug or broken invariant inside the gateway.
    Internal,
}

#[derive(Debug, Clone, Error)]
pub enum BackendError {
    #[error("topic not found: {0}")]
    TopicNotFound(String),
    #[error("topic already exists: {0}")]
    TopicAlreadyExists(String),
    #[error("subscription not found: {0}")]
    SubscriptionNotFound(String),
    #[error("consumer busy: subscription {0} is exclusive and already has a consumer")]
    ConsumerBusy(String),
    /// A producer of that name is already connected, or the topic has an exclusive producer.
    #[error("producer busy: {0}")]
    ProducerBusy(String),
    /// An exclusive producer was taken over by another one (a lost lease).
    #[error("producer fenced: {0}")]
    ProducerFenced(String),
    /// The topic was terminated: it takes no more messages, ever.
    #[error("topic terminated: {0}")]
    TopicTerminated(String),
    /// The topic's backlog quota is exceeded; writes succeed again once consumers catch up.
    #[error("backlog quota exceeded: {0}")]
    QuotaExceeded(String),
    /// The backend did not answer within the operation timeout; the operation may still
    /// complete.
    #[error("timed out: {0}")]
    Timeout(String),
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("message id out of range: {0}")]
    OutOfRange(String),
    #[error("backend unavailable: {0}")]
    Unavailable(String),
    #[error("storage failure: {0}")]
    Storage(String),
    #[error("backend is shutting down")]
    Closed,
    /// The backend refused the client's credentials or the operation for them (Pulsar's own
    /// authorization decided).
    #[error("not authorized: {0}")]
    NotAuthorized(String),
    /// The transaction is unknown or no longer open: it was committed or aborted, or the backend
    /// aborted it when its timeout passed.
    #[error("transaction not open: {0}")]
    TransactionNotOpen(String),
}

impl BackendError {
    pub fn source_kind(&self) -> ErrorSource {
        match self {
            BackendError::TopicNotFound(_)
            | BackendError::TopicAlreadyExists(_)
            | BackendError::SubscriptionNotFound(_)
            | BackendError::ConsumerBusy(_)
            | BackendError::ProducerBusy(_)
            | BackendError::ProducerFenced(_)
            | BackendError::TopicTerminated(_)
            | BackendError::QuotaExceeded(_)
            | BackendError::InvalidArgument(_)
            | BackendError::OutOfRange(_)
            | BackendError::NotAuthorized(_)
            | BackendError::TransactionNotOpen(_) => ErrorSource::Client,
            BackendError::Unavailable(_) | BackendError::Closed | BackendError::Timeout(_) => {
                ErrorSource::Backend
            }
            BackendError::Storage(_) => ErrorSource::Internal,
        }
    }

    /// Whether the same request may succeed if the client retries it.
    pub fn is_retriable(&self) -> bool {
        matches!(
            self,
            BackendError::Unavailable(_)
                | BackendError::ConsumerBusy(_)
                | BackendError::ProducerBusy(_)
                | BackendError::QuotaExceeded(_)
                | BackendError::Timeout(_)
        )
    }
}

pub type Result<T, E = BackendError> = std::result::Result<T, E>;
