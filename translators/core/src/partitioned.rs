//! One consumer over every partition of a partitioned topic, as Pulsar's own clients read a
//! partitioned topic. Front ends whose clients name a topic rather than a partition (AMQP 1.0,
//! JMS) read a topic that Kafka created, which is always partitioned, through it; the Kafka
//! front end addresses partitions itself.
//!
//! Each partition's consumer is owned by a task of its own, so a `receive` that stops waiting
//! loses nothing: what a partition hands out after that is kept for the next `receive`. Message
//! ids are unique across partitions (ledger ids are cluster-wide in BookKeeper, and global in the
//! embedded store), so an acknowledgement finds its partition by the id's ledger.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot};

use crate::backend::{Backend, Consumer, SeekTarget, SubscribeOptions};
use crate::{BackendError, MessageId, ReceivedMessage, Result, TopicName};

/// How long a partition's task waits for messages before it looks at acknowledgements again,
/// so that an ack never waits behind a long receive.
const RECEIVE_SLICE: Duration = Duration::from_millis(20);

pub struct PartitionedConsumer {
    partitions: Vec<mpsc::UnboundedSender<Request>>,
    /// Partitions asked to receive in this round that have not answered yet.
    receiving: Vec<bool>,
    /// Counts `receive` calls, so that an answer to an earlier one (its messages are kept) is
    /// not taken as this one's.
    round: u64,
    answers: mpsc::UnboundedReceiver<Answer>,
    /// Messages partitions handed out that no `receive` has returned yet.
    ready: VecDeque<ReceivedMessage>,
    /// The partition of each ledger seen, to route acknowledgements.
    ledgers: HashMap<u64, usize>,
}

/// A partition's answer to a receive: its index, the round it answers, and what it got.
type Answer = (usize, u64, Result<Vec<ReceivedMessage>>);

enum Request {
    /// Receive until `wait` is over, in place of any receive in progress.
    Receive {
        max: usize,
        wait: Duration,
        round: u64,
    },
    Ack(Vec<MessageId>, oneshot::Sender<Result<()>>),
    AckCumulative(MessageId, oneshot::Sender<Result<()>>),
    Nack(Vec<MessageId>, oneshot::Sender<Result<()>>),
    Flush(oneshot::Sender<Result<()>>),
    Seek(SeekTarget, oneshot::Sender<Result<()>>),
}

impl PartitionedConsumer {
    /// Reads the partitions' consumers, in partition order, as one.
    pub fn new(consumers: Vec<Box<dyn Consumer>>) -> PartitionedConsumer {
        let (answered, answers) = mpsc::unbounded_channel();
        let partitions = consumers
            .into_iter()
            .enumerate()
            .map(|(index, consumer)| {
                let (requests, requests_rx) = mpsc::unbounded_channel();
                tokio::spawn(serve(index, consumer, requests_rx, answered.clone()));
                requests
            })
            .collect::<Vec<_>>();
        PartitionedConsumer {
            receiving: vec![false; partitions.len()],
            round: 0,
            partitions,
            answers,
            ready: VecDeque::new(),
            ledgers: HashMap::new(),
        }
    }

    fn take_answer(&mut self, (index, round, answer): Answer) -> Result<()> {
        if round == self.round {
            self.receiving[index] = false;
        }
        for message in answer? {
            self.ledgers.insert(message.id.ledger, index);
            self.ready.push_back(message);
        }
        Ok(())
    }

    fn take_ready(&mut self, max: usize) -> Vec<ReceivedMessage> {
        let n = self.ready.len().min(max.max(1));
        self.ready.drain(..n).collect()
    }

    fn partition_of(&self, id: &MessageId) -> Result<usize> {
        self.ledgers.get(&id.ledger).copied().ok_or_else(|| {
            BackendError::InvalidArgument(format!("message {id} was not received here"))
        })
    }

    async fn ask(
        &self,
        index: usize,
        request: impl FnOnce(oneshot::Sender<Result<()>>) -> Request,
    ) -> Result<()> {
        let (done, answer) = oneshot::channel();
        self.partitions[index]
            .send(request(done))
            .map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }

    /// `ids` grouped by the partition that delivered them.
    fn by_partition(&self, ids: &[MessageId]) -> Result<HashMap<usize, Vec<MessageId>>> {
        let mut grouped: HashMap<usize, Vec<MessageId>> = HashMap::new();
        for id in ids {
            grouped.entry(self.partition_of(id)?).or_default().push(*id);
        }
        Ok(grouped)
    }
}

fn gone() -> BackendError {
    BackendError::Unavailable("a partition's consumer is gone".into())
}

#[async_trait]
impl Consumer for PartitionedConsumer {
    async fn receive(&mut self, max: usize, wait: Duration) -> Result<Vec<ReceivedMessage>> {
        while let Ok(answer) = self.answers.try_recv() {
            self.take_answer(answer)?;
        }
        if !self.ready.is_empty() {
            return Ok(self.take_ready(max));
        }
        // Every partition is asked again, so that this call's `wait` is the one that counts,
        // each for a share of `max`: a consumer without prefetch asks its broker for what it is
        // asked for, and the partitions together should not take more than this call wants.
        self.round += 1;
        let round = self.round;
        let share = max.max(1).div_ceil(self.partitions.len().max(1));
        for (index, partition) in self.partitions.iter().enumerate() {
            self.receiving[index] = partition
                .send(Request::Receive {
                    max: share,
                    wait,
                    round,
                })
                .is_ok();
        }
        // Every partition answers by its own deadline (`wait`), so this ends when the first
        // messages come or all of them said they had none.
        while self.ready.is_empty() && self.receiving.iter().any(|r| *r) {
            let Some(answer) = self.answers.recv().await else {
                return Err(gone());
            };
            self.take_answer(answer)?;
        }
        Ok(self.take_ready(max))
    }

    async fn ack(&mut self, ids: &[MessageId]) -> Result<()> {
        for (index, ids) in self.by_partition(ids)? {
            self.ask(index, |done| Request::Ack(ids, done)).await?;
        }
        Ok(())
    }

    /// Acknowledges everything up to `id` in its partition (the order of one partition is the
    /// only order there is).
    async fn ack_cumulative(&mut self, id: MessageId) -> Result<()> {
        let index = self.partition_of(&id)?;
        self.ask(index, |done| Request::AckCumulative(id, done))
            .await
    }

    async fn nack(&mut self, ids: &[MessageId]) -> Result<()> {
        for (index, ids) in self.by_partition(ids)? {
            self.ask(index, |done| Request::Nack(ids, done)).await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<()> {
        for index in 0..self.partitions.len() {
            self.ask(index, Request::Flush).await?;
        }
        Ok(())
    }

    /// A message target moves its own partition; a time moves every partition.
    async fn seek(&mut self, target: SeekTarget) -> Result<()> {
        let indexes = match target {
            SeekTarget::Message(id) => vec![self.partition_of(&id)?],
            SeekTarget::PublishTime(_) => (0..self.partitions.len()).collect(),
        };
        // What was handed out before the seek is delivered again after it.
        self.ready.clear();
        for index in indexes {
            self.ask(index, |done| Request::Seek(target, done)).await?;
        }
        Ok(())
    }

    async fn close(self: Box<Self>) {
        // Each task closes its consumer when its requests end; wait until they have.
        let PartitionedConsumer {
            partitions,
            mut answers,
            ..
        } = *self;
        drop(partitions);
        while answers.recv().await.is_some() {}
    }
}

/// Owns one partition's consumer: receives in slices while asked to, and handles
/// acknowledgements between slices. Closes the consumer when the requests end.
async fn serve(
    index: usize,
    mut consumer: Box<dyn Consumer>,
    mut requests: mpsc::UnboundedReceiver<Request>,
    answers: mpsc::UnboundedSender<Answer>,
) {
    // A receive in progress: how many messages, until when, and its round.
    let mut receiving: Option<(usize, tokio::time::Instant, u64)> = None;
    loop {
        let request = if receiving.is_some() {
            match requests.try_recv() {
                Ok(request) => Some(request),
                Err(mpsc::error::TryRecvError::Empty) => None,
                Err(mpsc::error::TryRecvError::Disconnected) => break,
            }
        } else {
            match requests.recv().await {
                Some(request) => Some(request),
                None => break,
            }
        };
        match request {
            Some(Request::Receive { max, wait, round }) => {
                receiving = Some((max, tokio::time::Instant::now() + wait, round));
            }
            Some(Request::Ack(ids, done)) => {
                let _ = done.send(consumer.ack(&ids).await);
            }
            Some(Request::AckCumulative(id, done)) => {
                let _ = done.send(consumer.ack_cumulative(id).await);
            }
            Some(Request::Nack(ids, done)) => {
                let _ = done.send(consumer.nack(&ids).await);
            }
            Some(Request::Flush(done)) => {
                let _ = done.send(consumer.flush().await);
            }
            Some(Request::Seek(target, done)) => {
                let _ = done.send(consumer.seek(target).await);
            }
            None => {
                let (max, deadline, round) = receiving.expect("receiving");
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                let got = consumer.receive(max, left.min(RECEIVE_SLICE)).await;
                let done = !matches!(&got, Ok(m) if m.is_empty())
                    || tokio::time::Instant::now() >= deadline;
                if done {
                    receiving = None;
                    if answers.send((index, round, got)).is_err() {
                        break;
                    }
                }
            }
        }
    }
    consumer.close().await;
}

/// A consumer of `subscription` on each of the `partitions` partitions of `topic`, read as one;
/// each partition's consumer gets `options` (its prefetch too).
pub async fn subscribe(
    backend: &dyn Backend,
    topic: &TopicName,
    partitions: u32,
    subscription: &str,
    options: SubscribeOptions,
) -> Result<Box<dyn Consumer>> {
    let mut consumers = Vec::with_capacity(partitions as usize);
    for index in 0..partitions {
        let consumer = backend
            .subscribe(&topic.partition(index), subscription, options)
            .await;
        match consumer {
            Ok(consumer) => consumers.push(consumer),
            Err(e) => {
                for consumer in consumers {
                    consumer.close().await;
                }
                return Err(e);
            }
        }
    }
    Ok(Box::new(PartitionedConsumer::new(consumers)))
}

/// A consumer of `subscription` on `topic` as it is: its partitions read as one when it has
/// `partitions` (above 0), else the topic itself.
pub async fn subscribe_either(
    backend: &dyn Backend,
    topic: &TopicName,
    partitions: u32,
    subscription: &str,
    options: SubscribeOptions,
) -> Result<Box<dyn Consumer>> {
    if partitions == 0 {
        return backend.subscribe(topic, subscription, options).await;
    }
    subscribe(backend, topic, partitions, subscription, options).await
}
