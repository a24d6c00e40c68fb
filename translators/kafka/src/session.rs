//! One Kafka client connection: a reader task that frames requests, and this task answering them
//! in order (as a Kafka broker does), joined by a bounded queue so that a slow backend stops
//! socket reads instead of growing memory.
//!
//! Consecutive produce requests are pipelined: each is handed to the backend in order and its
//! response written once persisted, while the next one is read. Any other request first waits
//! for the produce requests before it, so it sees their effects, as on a Kafka broker.
//!
//! A produce request's bytes count against the gateway's in-flight budget
//! (`gateway_core::budget`) from the moment its API key is read off the socket until its
//! records are persisted, and a fetch response's while it is assembled and written: when the
//! budget is used up, the reader task stops reading the socket before the request body.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::future::BoxFuture;
use gateway_core::budget::{Credit, MemoryBudget};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::{mpsc, watch};

use crate::api_versions;
use crate::frontend::KafkaFrontend;
use crate::handlers::api_versions as api_versions_handler;
use crate::handlers::fetch::FetchState;
use crate::handlers::groups::{self, ClientInfo};
use crate::handlers::sasl::SaslState;

/// Smallest request: api key, api version, correlation id and client id length.
const MIN_REQUEST: usize = 10;

/// Why a connection is closed instead of answered.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("request size {0} is outside 10..={1}")]
    BadLength(i64, usize),
    #[error("unknown API key {0}")]
    UnknownApi(i16),
    #[error("{0:?} v{1} is not supported")]
    UnsupportedVersion(ApiKey, i16),
    #[error("malformed {0:?} request: {1}")]
    Malformed(ApiKey, String),
    #[error("{0:?} before authentication")]
    Unauthenticated(ApiKey),
    #[error("{0:?} is not served on the internal listener")]
    NotServedInternally(ApiKey),
    #[error("the session's token expired and the client did not re-authenticate")]
    SessionExpired,
    #[error("authentication failed")]
    AuthenticationFailed,
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

/// A request as read off the socket, with the budget's credit for its bytes when it is a
/// produce request.
struct Frame {
    bytes: Bytes,
    credit: Option<Credit>,
}

/// Reads one length-prefixed frame. The length is checked against the limit before any buffer is
/// allocated, and the buffer grows only as bytes arrive, so a false length costs nothing. A
/// produce request's body is read only once the budget has credit for it.
async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    max: usize,
    budget: &Arc<MemoryBudget>,
) -> Result<Option<Frame>, Refusal> {
    let mut len = [0u8; 4];
    match reader.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = i32::from_be_bytes(len) as i64;
    if len < MIN_REQUEST as i64 || len > max as i64 {
        return Err(Refusal::BadLength(len, max));
    }
    let len = len as usize;
    let mut frame = BytesMut::with_capacity(len.min(64 * 1024));
    fill(reader, &mut frame, 2, len).await?;
    let credit = if i16::from_be_bytes([frame[0], frame[1]]) == ApiKey::Produce as i16 {
        Some(budget.acquire(len).await)
    } else {
        None
    };
    fill(reader, &mut frame, len, len).await?;
    Ok(Some(Frame {
        bytes: frame.freeze(),
        credit,
    }))
}

/// Reads into `frame` until it holds at least `at_least` bytes, and never more than `len`.
async fn fill<R: AsyncRead + Unpin>(
    reader: &mut R,
    frame: &mut BytesMut,
    at_least: usize,
    len: usize,
) -> Result<(), Refusal> {
    while frame.len() < at_least {
        if frame.capacity() == frame.len() {
            frame.reserve((len - frame.len()).min(1 << 20));
        }
        let want = len - frame.len();
        let n = (&mut *reader).take(want as u64).read_buf(frame).await?;
        if n == 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
        }
    }
    Ok(())
}

impl KafkaFrontend {
    /// Serves one connection until the client closes it, it fails, or `shutdown` turns true; on
    /// shutdown, requests already read are answered before the connection closes.
    pub async fn serve_connection<S>(
        self: Arc<Self>,
        stream: S,
        client: ClientInfo,
        mut shutdown: watch::Receiver<bool>,
    ) -> std::io::Result<()>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let draining = shutdown.clone();
        let (mut read_half, write_half) = tokio::io::split(stream);
        let (frames, mut queue) =
            mpsc::channel::<Result<Frame, Refusal>>(self.config.max_in_flight.max(1));
        let max_frame = self.config.max_frame_bytes;
        let budget = self.config.budget.clone();
        let reader = tokio::spawn(async move {
            loop {
                let frame = tokio::select! {
                    biased;
                    _ = shutdown.wait_for(|s| *s) => break,
                    frame = read_frame(&mut read_half, max_frame, &budget) => frame,
                };
                let stop = !matches!(frame, Ok(Some(_)));
                let item = match frame {
                    Ok(Some(f)) => Ok(f),
                    Ok(None) => break,
                    Err(e) => Err(e),
                };
                if frames.send(item).await.is_err() || stop {
                    break;
                }
            }
        });

        let mut writer = BufWriter::new(write_half);
        let mut conn = Connection {
            draining,
            fetch: FetchState::new(self.readers.clone()),
            response_credit: None,
            sasl: SaslState {
                internal: client.internal,
                ..SaslState::default()
            },
            as_client: None,
            client,
        };
        let connected = tokio::time::Instant::now();
        let mut last_request = connected;
        // Produce responses still waiting for the backend, oldest first.
        let mut in_flight: VecDeque<Later> = VecDeque::new();
        let cap = self.config.max_in_flight.max(1);
        let mut reading = true;
        let result = loop {
            let (waiting, room) = (!in_flight.is_empty(), reading && in_flight.len() < cap);
            if !waiting && !reading {
                break Ok(());
            }
            // Responses are batched while requests keep coming, and flushed before any wait.
            if !writer.buffer().is_empty() && (queue.is_empty() || !room) {
                if let Err(e) = writer.flush().await {
                    break Err(e);
                }
            }
            // A client (or peer) that has not authenticated in time, or sends nothing for the
            // idle timeout, is closed (with nothing in flight: a slow backend is not the
            // client's).
            let unauthenticated = if conn.client.internal {
                !conn.sasl.peer
            } else {
                self.config.auth_required && conn.sasl.authenticated.is_none()
            };
            let deadline = if unauthenticated {
                connected + self.config.auth_timeout
            } else {
                last_request + self.config.idle_timeout
            };
            let step = tokio::select! {
                biased;
                outcome = async { in_flight.front_mut().expect("checked").await }, if waiting => {
                    in_flight.pop_front();
                    Step::Finished(outcome)
                }
                item = queue.recv(), if room => Step::Arrived(item),
                _ = tokio::time::sleep_until(deadline), if !waiting => {
                    tracing::debug!(unauthenticated, "closing a Kafka connection: timed out");
                    break Ok(());
                }
            };
            last_request = tokio::time::Instant::now();
            let frame = match step {
                Step::Finished(outcome) => match deliver(&mut writer, outcome, false).await {
                    Ok(()) => continue,
                    Err(end) => break end,
                },
                Step::Arrived(None) => {
                    reading = false;
                    continue;
                }
                Step::Arrived(Some(item)) => item,
            };
            let is_produce =
                matches!(&frame, Ok(f) if f.bytes.clone().get_i16() == ApiKey::Produce as i16);
            if !is_produce {
                // Everything but produce waits for the responses before it.
                if let Err(end) = drain(&mut writer, &mut in_flight).await {
                    break end;
                }
                // Its handler may wait on the backend (a commit while Pulsar cannot be reached,
                // a join): answers already due go out first. Batched behind it, a member's
                // heartbeat answers were held back for as long as slow commits kept coming,
                // and the member's session lapsed in the client.
                if !writer.buffer().is_empty() {
                    if let Err(e) = writer.flush().await {
                        break Err(e);
                    }
                }
            }
            let outcome = match frame {
                Ok(frame) => {
                    // After authentication with a backend that authorizes (Pulsar), the
                    // client's requests run with its own credentials.
                    let frontend = conn.as_client.clone().unwrap_or_else(|| self.clone());
                    frontend.answer(&mut conn, frame).await
                }
                Err(e) => Err(e),
            };
            match outcome {
                Ok(Answer::Later(later)) => in_flight.push_back(later),
                Ok(Answer::Now(response)) => {
                    let delivered = deliver(&mut writer, Ok(response), false).await;
                    // A fetch response's bytes are out of the gateway's hands now.
                    drop(conn.response_credit.take());
                    if let Err(end) = delivered {
                        break end;
                    }
                }
                Ok(Answer::Last(response)) => {
                    let _ = deliver(&mut writer, Ok(Some(response)), true).await;
                    break Ok(());
                }
                Err(refusal) => {
                    // Requests read before the bad one are still answered.
                    let _ = drain(&mut writer, &mut in_flight).await;
                    let _ = deliver(&mut writer, Err(refusal), true).await;
                    break Ok(());
                }
            }
        };
        reader.abort();
        let _ = writer.flush().await;
        let _ = writer.shutdown().await;
        result
    }

    /// Decodes, handles and encodes one request. A produce request is answered `Later`; `None`
    /// means no response is due (acks=0).
    async fn answer(
        self: &Arc<Self>,
        conn: &mut Connection,
        frame: Frame,
    ) -> Result<Answer, Refusal> {
        let Frame {
            bytes: mut frame,
            credit,
        } = frame;
        let started = Instant::now();
        if conn.sasl.raw_next {
            // After a v0 SaslHandshake: a raw SASL token, answered with a raw one.
            let token = self
                .handle_raw_sasl(&mut conn.sasl, &frame)
                .ok_or(Refusal::AuthenticationFailed)?;
            conn.as_client = self.acting_for(&conn.sasl);
            let mut out = BytesMut::with_capacity(4 + token.len());
            out.put_i32(token.len() as i32);
            out.put_slice(&token);
            return Ok(Answer::Now(Some(out)));
        }
        let raw_key = frame.clone().get_i16();
        let version = frame.clone().advance_then_i16();
        let key = ApiKey::try_from(raw_key).map_err(|_| Refusal::UnknownApi(raw_key))?;
        if !api_versions::is_supported(key, version) && key != ApiKey::ApiVersions {
            return Err(Refusal::UnsupportedVersion(key, version));
        }
        if key == ApiKey::ApiVersions && !api_versions::is_supported(key, version) {
            // Kafka's rule: answer an unknown ApiVersions version with a v0 response, so the
            // client can pick a version both sides know.
            let correlation_id = frame.clone().advance_then_correlation();
            let response =
                ResponseKind::ApiVersions(api_versions_handler::unsupported(conn.client.internal));
            return encode(correlation_id, key, 0, &response).map(|r| Answer::Now(Some(r)));
        }
        if conn.client.internal {
            // The internal listener (DESIGN.md §8): a peer proves the fleet's secret before
            // anything else, and then gets only what forwarding needs. What a peer forwards was
            // authenticated, and its group ids scoped to the client's namespace, where the
            // client connected; only a peer that proved the secret is trusted with that.
            if !is_sasl_step(key) && !conn.sasl.peer {
                return Err(Refusal::Unauthenticated(key));
            }
            if !api_versions::served_internally(key) {
                return Err(Refusal::NotServedInternally(key));
            }
        } else if !is_sasl_step(key) {
            // Kafka closes a SASL connection that skips authentication, and (KIP-368) one
            // whose session outlived its credentials.
            if self.config.auth_required && conn.sasl.authenticated.is_none() {
                return Err(Refusal::Unauthenticated(key));
            }
            if conn.sasl.expired() {
                return Err(Refusal::SessionExpired);
            }
        }
        let header = RequestHeader::decode(&mut frame, key.request_header_version(version))
            .map_err(|e| Refusal::Malformed(key, e.to_string()))?;
        let mut request = RequestKind::decode(key, &mut frame, version)
            .map_err(|e| Refusal::Malformed(key, e.to_string()))?;
        let scope = self.config.group_scope.as_ref();
        let named_in_full = scope.map(|scope| scope.enter(&mut request));
        if let Some(id) = &header.client_id {
            if conn.client.client_id.as_str() != id.as_str() {
                conn.client.client_id = id.to_string();
            }
        }
        if let Some(mut response) = self
            .route_group_request(&conn.client, key, version, &request)
            .await
        {
            if let (Some(scope), Some(in_full)) = (scope, &named_in_full) {
                scope.leave(&mut response, in_full);
            }
            record_request_metrics(key, started);
            return encode(header.correlation_id, key, version, &response)
                .map(|r| Answer::Now(Some(r)));
        }
        let response = match request {
            RequestKind::ApiVersions(_) => Some(ResponseKind::ApiVersions(
                api_versions_handler::handle_for(conn.client.internal),
            )),
            RequestKind::SaslHandshake(r) => Some(ResponseKind::SaslHandshake(
                self.handle_sasl_handshake(&mut conn.sasl, r, version),
            )),
            RequestKind::SaslAuthenticate(r) => {
                let (response, ok) = self.handle_sasl_authenticate(&mut conn.sasl, r, version);
                if ok {
                    conn.as_client = self.acting_for(&conn.sasl);
                }
                record_request_metrics(key, started);
                let encoded = encode(
                    header.correlation_id,
                    key,
                    version,
                    &ResponseKind::SaslAuthenticate(response),
                )?;
                return Ok(if ok {
                    Answer::Now(Some(encoded))
                } else {
                    Answer::Last(encoded)
                });
            }
            RequestKind::Metadata(r) => Some(ResponseKind::Metadata(
                self.handle_metadata(r, version, &conn.client).await,
            )),
            RequestKind::Produce(r) => {
                let pending = self.dispatch_produce(r).await;
                let correlation_id = header.correlation_id;
                return Ok(Answer::Later(Box::pin(async move {
                    let response = pending.await;
                    // Persisted (or failed): the request's bytes are released.
                    drop(credit);
                    record_request_metrics(key, started);
                    match response {
                        Some(r) => encode(correlation_id, key, version, &ResponseKind::Produce(r))
                            .map(Some),
                        None => Ok(None),
                    }
                })));
            }
            RequestKind::Fetch(r) => {
                let (response, credit) = self.handle_fetch(&mut conn.fetch, r).await;
                conn.response_credit = Some(credit);
                Some(ResponseKind::Fetch(response))
            }
            RequestKind::ListOffsets(r) => {
                Some(ResponseKind::ListOffsets(self.handle_list_offsets(r).await))
            }
            RequestKind::InitProducerId(r) => Some(ResponseKind::InitProducerId(
                match r.transactional_id.clone() {
                    Some(id) => {
                        self.handle_init_transactional_producer(r, id, version)
                            .await
                    }
                    None => self.handle_init_producer_id(r),
                },
            )),
            RequestKind::AddPartitionsToTxn(r) => Some(ResponseKind::AddPartitionsToTxn(
                self.handle_add_partitions_to_txn(r, version).await,
            )),
            RequestKind::AddOffsetsToTxn(r) => Some(ResponseKind::AddOffsetsToTxn(
                self.handle_add_offsets_to_txn(r, version).await,
            )),
            RequestKind::TxnOffsetCommit(r) => Some(ResponseKind::TxnOffsetCommit(
                self.handle_txn_offset_commit(r).await,
            )),
            RequestKind::EndTxn(r) => {
                Some(ResponseKind::EndTxn(self.handle_end_txn(r, version).await))
            }
            RequestKind::DescribeTransactions(r) => Some(ResponseKind::DescribeTransactions(
                self.handle_describe_transactions(r).await,
            )),
            RequestKind::ListTransactions(r) => Some(ResponseKind::ListTransactions(
                self.handle_list_transactions(r).await,
            )),
            RequestKind::CreateTopics(r) => Some(ResponseKind::CreateTopics(
                self.handle_create_topics(r).await,
            )),
            RequestKind::DeleteTopics(r) => Some(ResponseKind::DeleteTopics(
                self.handle_delete_topics(r, version).await,
            )),
            RequestKind::CreatePartitions(r) => Some(ResponseKind::CreatePartitions(
                self.handle_create_partitions(r).await,
            )),
            RequestKind::DescribeConfigs(r) => Some(ResponseKind::DescribeConfigs(
                self.handle_describe_configs(r).await,
            )),
            RequestKind::DeleteRecords(r) => Some(ResponseKind::DeleteRecords(
                self.handle_delete_records(r).await,
            )),
            RequestKind::AlterConfigs(r) => Some(ResponseKind::AlterConfigs(
                self.handle_alter_configs(r).await,
            )),
            RequestKind::IncrementalAlterConfigs(r) => Some(ResponseKind::IncrementalAlterConfigs(
                self.handle_incremental_alter_configs(r).await,
            )),
            RequestKind::DescribeCluster(_) => Some(ResponseKind::DescribeCluster(
                self.handle_describe_cluster(&conn.client).await,
            )),
            RequestKind::FindCoordinator(r) => Some(ResponseKind::FindCoordinator(
                self.handle_find_coordinator(r, version, &conn.client).await,
            )),
            // A join or sync may wait for a whole rebalance; a draining gateway answers it
            // NOT_COORDINATOR at once, so the member moves to the next coordinator.
            RequestKind::JoinGroup(r) => {
                let member_id = r.member_id.clone();
                let mut draining = conn.draining.clone();
                Some(ResponseKind::JoinGroup(tokio::select! {
                    answer = self.handle_join_group(r, version, &conn.client) => answer,
                    _ = draining.wait_for(|d| *d) => groups::join_not_coordinator(member_id, version),
                }))
            }
            RequestKind::SyncGroup(r) => {
                let mut draining = conn.draining.clone();
                Some(ResponseKind::SyncGroup(tokio::select! {
                    answer = self.handle_sync_group(r) => answer,
                    _ = draining.wait_for(|d| *d) => groups::sync_not_coordinator(),
                }))
            }
            RequestKind::Heartbeat(r) => {
                Some(ResponseKind::Heartbeat(self.handle_heartbeat(r).await))
            }
            RequestKind::LeaveGroup(r) => Some(ResponseKind::LeaveGroup(
                self.handle_leave_group(r, version).await,
            )),
            RequestKind::OffsetCommit(r) => Some(ResponseKind::OffsetCommit(
                self.handle_offset_commit(r).await,
            )),
            RequestKind::OffsetFetch(r) => Some(ResponseKind::OffsetFetch(
                self.handle_offset_fetch(r, version, &conn.client).await,
            )),
            RequestKind::DescribeGroups(r) => Some(ResponseKind::DescribeGroups(
                self.handle_describe_groups(r, version, &conn.client).await,
            )),
            RequestKind::ListGroups(r) => Some(ResponseKind::ListGroups(
                self.handle_list_groups(r, version, &conn.client).await,
            )),
            RequestKind::DeleteGroups(r) => Some(ResponseKind::DeleteGroups(
                self.handle_delete_groups(r, version, &conn.client).await,
            )),
            RequestKind::OffsetDelete(r) => Some(ResponseKind::OffsetDelete(
                self.handle_offset_delete(r).await,
            )),
            RequestKind::ConsumerGroupHeartbeat(r) => Some(ResponseKind::ConsumerGroupHeartbeat(
                self.handle_consumer_group_heartbeat(r, version, &conn.client)
                    .await,
            )),
            RequestKind::ConsumerGroupDescribe(r) => Some(ResponseKind::ConsumerGroupDescribe(
                self.handle_consumer_group_describe(r, version, &conn.client)
                    .await,
            )),
            // The table and this match must agree; a row without a handler is a bug.
            _ => return Err(Refusal::UnsupportedVersion(key, version)),
        };
        record_request_metrics(key, started);
        match response {
            Some(mut r) => {
                if let (Some(scope), Some(in_full)) = (scope, &named_in_full) {
                    scope.leave(&mut r, in_full);
                }
                encode(header.correlation_id, key, version, &r).map(|r| Answer::Now(Some(r)))
            }
            None => Ok(Answer::Now(None)),
        }
    }
}

/// What a connection remembers between requests.
struct Connection {
    /// Turns true when the gateway drains: requests waiting on a rebalance are answered then.
    draining: watch::Receiver<bool>,
    fetch: FetchState,
    /// The budget's credit for the response being written (a fetch's records).
    response_credit: Option<Credit>,
    sasl: SaslState,
    /// The front end acting with the authenticated client's credentials, when the backend
    /// enforces authorization itself.
    as_client: Option<Arc<KafkaFrontend>>,
    client: ClientInfo,
}

/// Requests a client may send before it has authenticated.
fn is_sasl_step(key: ApiKey) -> bool {
    matches!(
        key,
        ApiKey::ApiVersions | ApiKey::SaslHandshake | ApiKey::SaslAuthenticate
    )
}

/// A response that is ready, one that waits for the backend, or the last one before closing.
enum Answer {
    Now(Option<BytesMut>),
    Last(BytesMut),
    Later(Later),
}

/// An encoded response, once its writes are persisted; `None` when no response is due.
type Later = BoxFuture<'static, Result<Option<BytesMut>, Refusal>>;

/// What the connection loop woke up for.
enum Step {
    Finished(Result<Option<BytesMut>, Refusal>),
    Arrived(Option<Result<Frame, Refusal>>),
}

/// Writes a response (flushed when asked), or ends the connection: `Err` carries the
/// connection's result.
async fn deliver<W: AsyncWrite + Unpin>(
    writer: &mut BufWriter<W>,
    outcome: Result<Option<BytesMut>, Refusal>,
    flush: bool,
) -> Result<(), std::io::Result<()>> {
    match outcome {
        Ok(Some(response)) => {
            writer.write_all(&response).await.map_err(Err)?;
            if flush {
                writer.flush().await.map_err(Err)?;
            }
            Ok(())
        }
        Ok(None) => Ok(()),
        Err(Refusal::Io(e)) => {
            tracing::debug!(error = %e, "connection read failed");
            Err(Ok(()))
        }
        Err(refusal) => {
            metrics::counter!("kafka_connections_refused_requests_total").increment(1);
            tracing::warn!(reason = %refusal, "closing Kafka connection");
            Err(Ok(()))
        }
    }
}

/// Writes every pending produce response, in order.
async fn drain<W: AsyncWrite + Unpin>(
    writer: &mut BufWriter<W>,
    in_flight: &mut VecDeque<Later>,
) -> Result<(), std::io::Result<()>> {
    while let Some(later) = in_flight.pop_front() {
        let outcome = later.await;
        deliver(writer, outcome, true).await?;
    }
    Ok(())
}

fn record_request_metrics(key: ApiKey, started: Instant) {
    let api = format!("{key:?}");
    metrics::counter!("kafka_requests_total", "api" => api.clone()).increment(1);
    metrics::histogram!("kafka_request_seconds", "api" => api)
        .record(started.elapsed().as_secs_f64());
}

/// Small helpers to peek at fixed header fields before the header is decoded.
trait PeekHeader {
    fn advance_then_i16(self) -> i16;
    fn advance_then_correlation(self) -> i32;
}

impl PeekHeader for Bytes {
    fn advance_then_i16(mut self) -> i16 {
        self.advance(2);
        self.get_i16()
    }
    fn advance_then_correlation(mut self) -> i32 {
        self.advance(4);
        self.get_i32()
    }
}

/// Length prefix, response header, body.
fn encode(
    correlation_id: i32,
    key: ApiKey,
    version: i16,
    response: &ResponseKind,
) -> Result<BytesMut, Refusal> {
    let mut out = BytesMut::with_capacity(256);
    out.put_i32(0);
    let mut header = ResponseHeader::default();
    header.correlation_id = correlation_id;
    header
        .encode(&mut out, key.response_header_version(version))
        .and_then(|_| response.encode(&mut out, version))
        .map_err(|e| Refusal::Malformed(key, format!("encoding the response failed: {e}")))?;
    let len = (out.len() - 4) as i32;
    out[..4].copy_from_slice(&len.to_be_bytes());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use gateway_core::backend::prelude::*;
    use gateway_core::TopicName;
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::ProduceRequest;
    use kafka_protocol::protocol::StrBytes;
    use tokio::io::AsyncWriteExt;

    use super::*;
    use crate::config::KafkaConfig;
    use crate::groups::faulty::Faulty;
    use crate::record_batch::{self, Record};

    /// A length-prefixed Produce v7 request of one record of `value` bytes to partition 0.
    fn produce_frame(correlation_id: i32, topic: &str, value: usize) -> Vec<u8> {
        let mut records = BytesMut::new();
        record_batch::encode(
            &mut records,
            0,
            &[Record {
                offset_delta: 0,
                timestamp: 0,
                key: None,
                value: Some(Bytes::from(vec![1u8; value])),
                headers: Vec::new(),
            }],
        );
        let mut partition = PartitionProduceData::default();
        partition.index = 0;
        partition.records = Some(records.freeze());
        let mut data = TopicProduceData::default();
        data.name = kafka_protocol::messages::TopicName(StrBytes::from_string(topic.to_owned()));
        data.partition_data = vec![partition];
        let mut request = ProduceRequest::default();
        request.acks = -1;
        request.timeout_ms = 30_000;
        request.topic_data = vec![data];
        let version = 7;
        let mut header = RequestHeader::default();
        header.request_api_key = ApiKey::Produce as i16;
        header.request_api_version = version;
        header.correlation_id = correlation_id;
        let mut body = BytesMut::new();
        header
            .encode(&mut body, ApiKey::Produce.request_header_version(version))
            .unwrap();
        request.encode(&mut body, version).unwrap();
        let mut frame = (body.len() as i32).to_be_bytes().to_vec();
        frame.extend_from_slice(&body);
        frame
    }

    /// While the backend does not persist, produce requests hold the gateway's in-flight budget,
    /// and once it is used up the connection stops reading them off the socket: with 100 kB of
    /// budget, two requests of 40 kB are handed to the backend and the others wait, unread.
    /// Nothing fails: once the backend persists, every request is answered and the budget is
    /// free again. (Without the budget all five were read and handed over at once, up to the
    /// 16 requests in flight a connection may have.)
    #[tokio::test]
    async fn produce_requests_stop_being_read_when_the_budget_is_used_up() {
        let dir = tempfile::tempdir().unwrap();
        let faulty = Faulty::new(gateway_embedded::EmbeddedBackend::open(dir.path()).unwrap());
        faulty
            .create_topic(&TopicName::new("public", "default", "t"), 0)
            .await
            .unwrap();
        faulty.stall_submits(true);
        let budget = MemoryBudget::new(100_000);
        let frontend = KafkaFrontend::new(
            KafkaConfig {
                budget: budget.clone(),
                ..KafkaConfig::default()
            },
            faulty.clone(),
        );
        let (client, server) = tokio::io::duplex(1 << 20);
        let (_stop, shutdown) = watch::channel(false);
        let serving =
            tokio::spawn(frontend.serve_connection(server, ClientInfo::default(), shutdown));
        let (mut from_gateway, mut to_gateway) = tokio::io::split(client);
        for id in 0..5 {
            to_gateway
                .write_all(&produce_frame(id, "t", 40_000))
                .await
                .unwrap();
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while faulty.submitted() < 2 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(faulty.submitted(), 2, "requests read beyond the budget");
        assert!(budget.in_use() > 80_000 && budget.in_use() <= 100_000);

        faulty.stall_submits(false);
        for id in 0..5 {
            let len = from_gateway.read_i32().await.unwrap();
            let mut response = vec![0; len as usize];
            from_gateway.read_exact(&mut response).await.unwrap();
            let correlation_id = i32::from_be_bytes(response[..4].try_into().unwrap());
            assert_eq!(correlation_id, id, "answered in order");
            let response = kafka_protocol::messages::ProduceResponse::decode(
                &mut Bytes::from(response).slice(4..),
                7,
            )
            .unwrap();
            let partition = &response.responses[0].partition_responses[0];
            assert_eq!(partition.error_code, 0, "request {id} failed");
        }
        assert_eq!(faulty.submitted(), 5);
        // The client goes: the connection ends.
        drop((to_gateway, from_gateway));
        let _ = serving.await;
        assert_eq!(budget.in_use(), 0, "every request's credit was given back");
    }
}
