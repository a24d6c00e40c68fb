//! The client of Pulsar's transaction coordinators (PIP-31). Coordinator `n` is served by the
//! broker owning partition `n` of `pulsar/system/transaction_coordinator_assign`; the partition
//! count is the number of coordinators (a standalone broker with `transactionCoordinatorEnabled`
//! creates that topic itself, with one partition). A transaction id carries its coordinator in
//! its most significant bits, so every later command of a transaction goes to that one.
//!
//! Like the Java client: a connection to a coordinator's broker first sends
//! TC_CLIENT_CONNECT_REQUEST (the broker loads the coordinator if it is not yet), then NEW_TXN,
//! ADD_PARTITION_TO_TXN and END_TXN. A coordinator connection that dropped is looked up and
//! connected again at its next use. The broker records the role of the connection that opened a
//! transaction as its owner and refuses other roles, so a backend acting for a client (its own
//! pool, its token) keeps to its own transactions.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gateway_core::backend::TransactionId;
use gateway_core::{BackendError, Result};
use tokio::time::Instant;

use crate::connection::{server_error, unavailable, Connection};
use crate::pool::Pool;
use crate::proto::{
    command_type as t, server_error as e, txn_action, BaseCommand, CommandAddPartitionToTxn,
    CommandEndTxn, CommandNewTxn, CommandPartitionedTopicMetadata, CommandTcClientConnectRequest,
};

const ASSIGN_TOPIC: &str = "persistent://pulsar/system/transaction_coordinator_assign";
/// Pauses between attempts while a coordinator is being loaded.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Open transactions remembered (for their topics) before expired ones are looked for.
const TRANSACTIONS_BEFORE_SWEEP: usize = 1024;

fn not_served(why: &str) -> BackendError {
    BackendError::Unavailable(format!(
        "Pulsar serves no transactions ({why}); enable transactionCoordinatorEnabled on the brokers"
    ))
}

/// What a transaction wrote to, as far as this backend added it.
pub(crate) struct Open {
    /// After this the coordinator has aborted it; forgotten then.
    expires: Instant,
    topics: HashSet<String>,
}

pub struct Coordinators {
    pool: Arc<Pool>,
    /// The number of coordinators, once known (asked again while unknown).
    count: tokio::sync::Mutex<Option<u64>>,
    /// Round-robin over the coordinators for new transactions.
    next: AtomicU64,
    /// Per coordinator, the connection it was told of this client on.
    connected: Mutex<HashMap<u64, Arc<Connection>>>,
    /// Topics added to open transactions, so adding again costs no round trip. Shared by a
    /// backend with the backends it makes for clients' tokens (`as_client`): Pulsar lets only
    /// the role that opened a transaction add to it, but any role with produce rights send in
    /// it, so a client's sends in a transaction the gateway opened and added their topic to
    /// must not add it again.
    open: OpenTransactions,
}

pub(crate) type OpenTransactions = Arc<Mutex<HashMap<TransactionId, Open>>>;

impl Coordinators {
    /// Coordinators reached on `pool`'s connections; `open` is shared with the backend this
    /// one was made from, if any.
    pub fn new(pool: Arc<Pool>, open: Option<OpenTransactions>) -> Coordinators {
        Coordinators {
            pool,
            count: Default::default(),
            next: AtomicU64::new(rand::random::<u32>() as u64),
            connected: Default::default(),
            open: open.unwrap_or_default(),
        }
    }

    pub(crate) fn open_transactions(&self) -> OpenTransactions {
        self.open.clone()
    }

    pub async fn begin(&self, timeout: Duration) -> Result<TransactionId> {
        let tc = self.next.fetch_add(1, Ordering::Relaxed) % self.count().await?;
        let answer = self
            .call(tc, true, |request_id| BaseCommand {
                r#type: t::NEW_TXN,
                new_txn: Some(CommandNewTxn {
                    request_id,
                    // Milliseconds, whatever the field's name (see proto.rs).
                    txn_ttl_seconds: Some(timeout.as_millis().min(u64::MAX as u128) as u64),
                    tc_id: Some(tc),
                }),
                ..Default::default()
            })
            .await?;
        let r = answer
            .new_txn_response
            .ok_or_else(|| unavailable("NEW_TXN answered without NEW_TXN_RESPONSE"))?;
        let (Some(most_bits), Some(least_bits)) = (r.txnid_most_bits, r.txnid_least_bits) else {
            return Err(unavailable("NEW_TXN_RESPONSE without a transaction id"));
        };
        let txn = TransactionId {
            most_bits,
            least_bits,
        };
        let mut open = self.open.lock().expect("open lock");
        if open.len() > TRANSACTIONS_BEFORE_SWEEP {
            let now = Instant::now();
            open.retain(|_, o| o.expires > now);
        }
        open.insert(
            txn,
            Open {
                // A timeout too long for an Instant never passes.
                expires: Instant::now()
                    .checked_add(timeout)
                    .unwrap_or_else(|| Instant::now() + Duration::from_secs(1 << 32)),
                topics: HashSet::new(),
            },
        );
        Ok(txn)
    }

    /// Registers `topic` with the transaction's coordinator, unless this backend already did.
    /// A transaction this backend opened and whose timeout has passed is refused here: Pulsar
    /// 4.0 still acknowledges a send in a transaction its coordinator aborted (on a topic the
    /// transaction wrote before), and drops the entry (measured, `tests/transactions.rs`), so
    /// sending would only hide the abort until the commit fails.
    pub async fn add(&self, txn: TransactionId, topic: &str) -> Result<()> {
        let known = match self.open.lock().expect("open lock").get(&txn) {
            Some(o) if o.expires <= Instant::now() => {
                return Err(BackendError::TransactionNotOpen(format!(
                    "{txn}: its timeout has passed"
                )))
            }
            Some(o) => o.topics.contains(topic),
            None => false,
        };
        if known {
            return Ok(());
        }
        let answer = self
            .call(txn.most_bits, true, |request_id| BaseCommand {
                r#type: t::ADD_PARTITION_TO_TXN,
                add_partition_to_txn: Some(CommandAddPartitionToTxn {
                    request_id,
                    txnid_least_bits: Some(txn.least_bits),
                    txnid_most_bits: Some(txn.most_bits),
                    partitions: vec![topic.to_owned()],
                }),
                ..Default::default()
            })
            .await?;
        answer
            .add_partition_to_txn_response
            .ok_or_else(|| unavailable("ADD_PARTITION_TO_TXN answered without its response"))?;
        if let Some(o) = self.open.lock().expect("open lock").get_mut(&txn) {
            o.topics.insert(topic.to_owned());
        }
        Ok(())
    }

    /// Commits or aborts; returns when the coordinator has ended the transaction on every topic
    /// (it answers END_TXN after its END_TXN_ON_PARTITION calls completed).
    pub async fn end(&self, txn: TransactionId, commit: bool) -> Result<()> {
        // An END_TXN the broker may have acted on is not resent: a second one would answer
        // "not found" for a transaction that did commit. Only a coordinator not (yet) loaded,
        // which did nothing, is asked again.
        let answer = self
            .call(txn.most_bits, false, |request_id| BaseCommand {
                r#type: t::END_TXN,
                end_txn: Some(CommandEndTxn {
                    request_id,
                    txnid_least_bits: Some(txn.least_bits),
                    txnid_most_bits: Some(txn.most_bits),
                    txn_action: Some(if commit {
                        txn_action::COMMIT
                    } else {
                        txn_action::ABORT
                    }),
                }),
                ..Default::default()
            })
            .await;
        if matches!(answer, Ok(_) | Err(BackendError::TransactionNotOpen(_))) {
            self.open.lock().expect("open lock").remove(&txn);
        }
        answer?
            .end_txn_response
            .ok_or_else(|| unavailable("END_TXN answered without END_TXN_RESPONSE"))?;
        Ok(())
    }

    /// The number of coordinators: the partitions of the assign topic (none: not enabled).
    async fn count(&self) -> Result<u64> {
        let mut count = self.count.lock().await;
        if let Some(n) = *count {
            return Ok(n);
        }
        let connection = self.pool.service_connection().await?;
        let request_id = connection.next_id();
        let answer = connection
            .request(
                request_id,
                BaseCommand {
                    r#type: t::PARTITIONED_METADATA,
                    partition_metadata: Some(CommandPartitionedTopicMetadata {
                        topic: ASSIGN_TOPIC.to_owned(),
                        request_id,
                    }),
                    ..Default::default()
                },
            )
            .await
            .map_err(no_rights)?;
        let r = answer
            .partition_metadata_response
            .ok_or_else(|| unavailable("PARTITIONED_METADATA answered without its response"))?;
        if r.response == Some(1) {
            return Err(match r.error {
                Some(e::TOPIC_NOT_FOUND) => not_served("no transaction coordinator assign topic"),
                code => server_error(code.unwrap_or(0), r.message.as_deref().unwrap_or("")),
            });
        }
        match r.partitions.unwrap_or(0) {
            0 => Err(not_served("no transaction coordinator assign topic")),
            n => {
                *count = Some(n as u64);
                Ok(n as u64)
            }
        }
    }

    /// A connection to coordinator `tc`'s broker on which it knows this client.
    async fn connection(&self, tc: u64) -> Result<Arc<Connection>> {
        if let Some(c) = self.connected.lock().expect("connected lock").get(&tc) {
            if c.is_alive() {
                return Ok(c.clone());
            }
        }
        let connection = self
            .pool
            .owner_of(&format!("{ASSIGN_TOPIC}-partition-{tc}"))
            .await
            .map_err(no_rights)?;
        let request_id = connection.next_id();
        let answer = connection
            .request(
                request_id,
                BaseCommand {
                    r#type: t::TC_CLIENT_CONNECT_REQUEST,
                    tc_client_connect_request: Some(CommandTcClientConnectRequest {
                        request_id,
                        tc_id: tc,
                    }),
                    ..Default::default()
                },
            )
            .await
            .map_err(disabled_or)?;
        if let Some(r) = answer.tc_client_connect_response {
            if let Some(code) = r.error {
                return Err(coordinator_error(
                    tc,
                    code,
                    r.message.as_deref().unwrap_or(""),
                ));
            }
        }
        self.connected
            .lock()
            .expect("connected lock")
            .insert(tc, connection.clone());
        Ok(connection)
    }

    /// Sends a command to coordinator `tc` and returns its answer, or the error it carries. A
    /// coordinator still loading is asked again until the operation timeout; so is one whose
    /// connection failed, when `resend` (the command is harmless to repeat).
    async fn call(
        &self,
        tc: u64,
        resend: bool,
        command: impl Fn(u64) -> BaseCommand,
    ) -> Result<BaseCommand> {
        let deadline = Instant::now() + self.pool.operation_timeout();
        let mut backoff = FIRST_BACKOFF;
        loop {
            let failure = match self.call_once(tc, &command).await {
                Ok(answer) => return Ok(answer),
                Err(Attempt::NotReady(e)) => e,
                Err(Attempt::Lost(e)) if resend => e,
                Err(Attempt::Lost(e) | Attempt::Failed(e)) => return Err(e),
            };
            let pause = backoff.mul_f64(0.5 + rand::random::<f64>() / 2.0);
            if Instant::now() + pause >= deadline {
                return Err(failure);
            }
            tracing::debug!(tc, error = %failure, ?pause, "transaction coordinator not ready; retrying");
            tokio::time::sleep(pause).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    async fn call_once(
        &self,
        tc: u64,
        command: &impl Fn(u64) -> BaseCommand,
    ) -> Result<BaseCommand, Attempt> {
        let connection = self.connection(tc).await.map_err(|e| match e {
            e @ (BackendError::Unavailable(_) | BackendError::Timeout(_)) => Attempt::NotReady(e),
            e => Attempt::Failed(e),
        })?;
        let request_id = connection.next_id();
        let answer = match connection.request(request_id, command(request_id)).await {
            Ok(answer) => answer,
            Err(BackendError::Unavailable(m)) if !connection.is_alive() => {
                return Err(Attempt::Lost(BackendError::Unavailable(format!(
                    "transaction coordinator {tc}: {m}"
                ))))
            }
            Err(e) => return Err(Attempt::Failed(disabled_or(e))),
        };
        let error = answer
            .new_txn_response
            .as_ref()
            .map(|r| (r.error, r.message.clone()))
            .or(answer
                .add_partition_to_txn_response
                .as_ref()
                .map(|r| (r.error, r.message.clone())))
            .or(answer
                .end_txn_response
                .as_ref()
                .map(|r| (r.error, r.message.clone())));
        match error {
            Some((Some(code), message)) => {
                let message = message.unwrap_or_default();
                let e = coordinator_error(tc, code, &message);
                if matches!(
                    code,
                    e::TRANSACTION_COORDINATOR_NOT_FOUND | e::SERVICE_NOT_READY
                ) {
                    // The coordinator moved or is loading: look it up again next time.
                    self.connected.lock().expect("connected lock").remove(&tc);
                    Err(Attempt::NotReady(e))
                } else {
                    Err(Attempt::Failed(e))
                }
            }
            _ => Ok(answer),
        }
    }
}

/// How one attempt failed: the coordinator is not ready (asking again helps), the connection
/// dropped with the command perhaps acted on, or a definite answer.
enum Attempt {
    NotReady(BackendError),
    Lost(BackendError),
    Failed(BackendError),
}

fn coordinator_error(tc: u64, code: i32, message: &str) -> BackendError {
    match code {
        e::TRANSACTION_COORDINATOR_NOT_FOUND => BackendError::Unavailable(format!(
            "transaction coordinator {tc} is not available: {message}"
        )),
        _ => disabled_or(server_error(code, message)),
    }
}

/// Finding the coordinators is a lookup in namespace `pulsar/system`, which Pulsar authorizes
/// like any other (the Java client needs the same): a role without produce or consume rights
/// there gets no transactions.
fn no_rights(e: BackendError) -> BackendError {
    match e {
        BackendError::NotAuthorized(m) => BackendError::NotAuthorized(format!(
            "transactions need lookup rights (consume) on namespace pulsar/system, where the \
             transaction coordinators are: {m}"
        )),
        e => e,
    }
}

/// A broker without `transactionCoordinatorEnabled` refuses every transaction command with
/// NotAllowed ("Transactions are not enabled").
fn disabled_or(e: BackendError) -> BackendError {
    match e {
        BackendError::InvalidArgument(m) if m.contains("not enabled") => not_served(&m),
        e => e,
    }
}
