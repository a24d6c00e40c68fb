//! The delivery path of a channel: basic.consume and basic.get, acknowledgements, rejections
//! and recoveries settled against the queues' sources, and each consumer kept in step with its
//! queue's bindings.

use super::*;

impl Channel {
    pub(super) async fn consume(&mut self, m: basic::Consume) -> AmqpResult<()> {
        let vhost = self.vhost().clone();
        let name = self.queue_name(m.queue.as_str())?;
        let queue = self.usable_queue(&name).await?;
        self.check_read(&queue.name).await?;
        let tag = match m.consumer_tag.as_str() {
            "" => format!("amq.ctag-{}", objects::random_token()),
            t => t.to_owned(),
        };
        if self.consumers.contains_key(&tag) {
            return Err(AmqpError::connection(
                ReplyCode::NotAllowed,
                format!("attempt to reuse consumer tag '{tag}'"),
            ));
        }
        if !vhost.consumer_joins(&queue.name, m.exclusive) {
            return Err(AmqpError::access_refused(format!(
                "queue '{}' in vhost '{}' in exclusive use",
                queue.name, vhost.name
            )));
        }
        let (stop, stopped) = watch::channel(false);
        let cancelled = Arc::new(std::sync::atomic::AtomicBool::new(false));
        self.consumers.insert(
            tag.clone(),
            RunningConsumer {
                queue: queue.name.clone(),
                stop,
                cancelled: cancelled.clone(),
            },
        );
        if !m.nowait {
            self.send(AMQPClass::Basic(basic::AMQPMethod::ConsumeOk(
                basic::ConsumeOk {
                    consumer_tag: tag.as_str().into(),
                },
            )))
            .await;
        }
        let mut credit = Vec::new();
        if !m.no_ack {
            if self.prefetch > 0 {
                credit.push(Arc::new(Semaphore::new(self.prefetch.into())));
            }
            if let Some(global) = &self.global_credit {
                credit.push(global.clone());
            }
        }
        let prefetch = credit
            .iter()
            .map(|c| c.available_permits() as u32)
            .min()
            .unwrap_or(0);
        let target = ConsumerTarget {
            deliveries: self.deliveries.clone(),
            tag,
            no_ack: m.no_ack,
            credit,
            prefetch,
            cancelled,
        };
        tokio::spawn(run_consumer(self.session.clone(), queue, target, stopped));
        Ok(())
    }

    /// basic.get: a consumer is attached, for this one get, to each source that has messages
    /// (the queue's own topic first); one that handed out a message stays until it is settled.
    /// Holding consumers between gets would hide messages from the queue's other consumers.
    pub(super) async fn get(&mut self, m: basic::Get) -> AmqpResult<()> {
        self.flush_settlements().await;
        let name = self.queue_name(m.queue.as_str())?;
        let queue = self.usable_queue(&name).await?;
        self.check_read(&queue.name).await?;
        crate::expiry::mark_used(self.vhost(), &queue).await;
        let backlogs = objects::source_backlogs(&self.session, &queue).await?;
        let count: u64 = backlogs.iter().map(|(_, n)| n).sum();
        let vhost = self.vhost().clone();
        let backend = self.session.frontend.backend.clone();
        let policy = Arc::new(crate::arguments::policy_of(&queue));
        for (spec, _) in backlogs.into_iter().filter(|(_, n)| *n > 0) {
            let mut set = SourceSet::default();
            set.reconcile(&backend, &vhost, vec![spec], &policy, || None)
                .await?;
            let Some(handle) = set.running.values().next().cloned() else {
                continue;
            };
            let (reply, answer) = tokio::sync::oneshot::channel();
            let asked = handle.send(SourceCommand::Get(GET_WAIT, reply));
            // After the get: the source ends once what it handed out is settled.
            set.drain_all();
            if asked.is_err() {
                continue;
            }
            let Ok(Some((id, message, redelivered))) = answer.await else {
                continue;
            };
            let tag = self.deliveries.next_tag();
            let left = count.saturating_sub(1).min(u64::from(u32::MAX)) as u32;
            let frames = delivery::content_frames(
                self.id,
                basic::AMQPMethod::GetOk(basic::GetOk {
                    delivery_tag: tag,
                    redelivered,
                    exchange: message.exchange.as_str().into(),
                    routing_key: message.routing_key.as_str().into(),
                    message_count: left,
                }),
                &message,
                self.session.frame_max,
            );
            if m.no_ack {
                let _ = handle.send(SourceCommand::Ack(id));
                self.note_settled(&handle);
            } else {
                let unacked = Unacked {
                    source: handle,
                    id,
                    _credit: Vec::new(),
                    message: Arc::new(message),
                    policy,
                };
                self.deliveries
                    .unacked
                    .lock()
                    .expect("unacked lock")
                    .insert(tag, unacked);
            }
            let _ = self.session.out.send(frames).await;
            return Ok(());
        }
        self.send(AMQPClass::Basic(basic::AMQPMethod::GetEmpty(
            basic::GetEmpty {},
        )))
        .await;
        Ok(())
    }

    pub(super) async fn settle(&mut self, tag: u64, multiple: bool, how: Settle) -> AmqpResult<()> {
        let settled = self
            .deliveries
            .settle(tag, multiple)
            .map_err(|tag| AmqpError::precondition(format!("unknown delivery tag {tag}")))?;
        if let Some(tx) = self.transaction.as_mut() {
            for (tag, unacked) in settled {
                tx.settles.push((tag, how, unacked));
            }
            return Ok(());
        }
        for (_, unacked) in settled {
            self.apply_settle(&how, unacked).await;
        }
        Ok(())
    }

    pub(super) fn note_settled(&mut self, source: &SourceHandle) {
        if !self.settled_on.iter().any(|s| s.same_channel(source)) {
            self.settled_on.push(source.clone());
        }
    }

    /// Waits until the settlements this channel sent have reached the backend (bounded: a
    /// source that is gone has settled everything it had).
    pub(super) async fn flush_settlements(&mut self) {
        for source in std::mem::take(&mut self.settled_on) {
            let (reply, done) = oneshot::channel();
            if source.send(SourceCommand::Flush(reply)).is_ok() {
                let _ = tokio::time::timeout(Duration::from_secs(5), done).await;
            }
        }
    }

    pub(super) async fn apply_settle(&mut self, how: &Settle, unacked: Unacked) {
        self.note_settled(&unacked.source);
        match how {
            Settle::Ack => {
                let _ = unacked.source.send(SourceCommand::Ack(unacked.id));
            }
            Settle::Requeue => {
                let _ = unacked.source.send(SourceCommand::Requeue(unacked.id));
            }
            Settle::Reject => {
                if let Some(dl) = &unacked.policy.dead_letter {
                    let dead = deadletter::publish(
                        &self.session.frontend.backend,
                        &self.session.vhost,
                        dl,
                        &unacked.policy.queue,
                        "rejected",
                        &unacked.message,
                    )
                    .await;
                    if let Err(e) = dead {
                        // Kept in the queue rather than lost.
                        warn!(error = %e.text, "dead-lettering a rejected message failed; requeued");
                        let _ = unacked.source.send(SourceCommand::Requeue(unacked.id));
                        return;
                    }
                }
                let _ = unacked.source.send(SourceCommand::Ack(unacked.id));
            }
        }
    }
}

pub(super) struct ConsumerTarget {
    pub(super) deliveries: Arc<ChannelDeliveries>,
    pub(super) tag: String,
    pub(super) no_ack: bool,
    pub(super) credit: Vec<Arc<Semaphore>>,
    pub(super) prefetch: u32,
    pub(super) cancelled: Arc<std::sync::atomic::AtomicBool>,
}

/// Keeps a consumer's sources in step with its queue's bindings, and tells the client when the
/// queue is deleted (consumer_cancel_notify).
pub(super) async fn run_consumer(
    session: Arc<Session>,
    queue: Queue,
    target: ConsumerTarget,
    mut stopped: watch::Receiver<bool>,
) {
    let vhost = session.vhost.clone();
    let backend = session.frontend.backend.clone();
    let policy = Arc::new(crate::arguments::policy_of(&queue));
    let mut changes = vhost.changes.subscribe();
    let mut sources = SourceSet::default();
    let stop_signal = stopped.clone();
    let push = || {
        Some(PushTarget {
            deliveries: target.deliveries.clone(),
            consumer_tag: target.tag.clone(),
            no_ack: target.no_ack,
            credit: target.credit.clone(),
            prefetch: target.prefetch,
            cancelled: target.cancelled.clone(),
            stopped: stop_signal.clone(),
        })
    };
    let mut attaching = gateway_core::retry_log::RetryLog::default();
    loop {
        let current = vhost.snapshot().await.queues.get(&queue.name).cloned();
        match current {
            Some(q) if q.incarnation == queue.incarnation => {
                let wanted = delivery::sources_of(&vhost, &*vhost.snapshot().await, &q);
                match sources
                    .reconcile(&backend, &vhost, wanted, &policy, push)
                    .await
                {
                    Ok(()) => {
                        attaching.succeeded(format_args!("attaching to queue {}", queue.name))
                    }
                    Err(e) => {
                        attaching.failed(format_args!("attaching to queue {}", queue.name), &e);
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                }
            }
            _ => {
                // The queue is gone: a server-sent cancel (RabbitMQ's consumer_cancel_notify).
                if end_consumer(&target.cancelled, &vhost, &queue.name).is_none() {
                    break;
                }
                let cancel = AMQPFrame::Method(
                    target.deliveries.channel,
                    AMQPClass::Basic(basic::AMQPMethod::Cancel(basic::Cancel {
                        consumer_tag: target.tag.as_str().into(),
                        nowait: true,
                    })),
                );
                let _ = session.out.send(vec![cancel]).await;
                break;
            }
        }
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { break },
            _ = stopped.wait_for(|s| *s) => break,
        }
    }
    sources.drain_all();
}
