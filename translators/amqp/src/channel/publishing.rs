//! The publish path of a channel: basic.publish's content assembled, paid for from the
//! in-flight budget, routed (`crate::publish`) and stored, and publisher confirms sent in
//! publish order once Pulsar has persisted each message (a failure is a nack).

use super::*;

impl Channel {
    pub(super) async fn publish_complete(&mut self) -> AmqpResult<()> {
        let incoming = self.incoming.take().expect("called with a message in hand");
        let properties = incoming.properties.unwrap_or_default();
        if let Some(user) = properties.user_id() {
            if user.as_str() != self.session.user {
                return Err(AmqpError::precondition(format!(
                    "user_id property set to '{user}' but authenticated user was '{}'",
                    self.session.user
                ))
                .on_method(60, 40));
            }
        }
        let message = AmqpMessage {
            exchange: incoming.publish.exchange.as_str().to_owned(),
            routing_key: incoming.publish.routing_key.as_str().to_owned(),
            properties,
            body: incoming.body.into(),
        };
        if let Some(tx) = self.transaction.as_mut() {
            // Checked now, as RabbitMQ does, so a bad exchange fails the publish, not the commit.
            publish::route(
                &self.session.vhost,
                &message.exchange,
                &message.routing_key,
                message.properties.headers().as_ref(),
            )
            .await
            .map_err(|e| e.on_method(60, 40))?;
            tx.publishes.push((incoming.publish, message));
            return Ok(());
        }
        let credit = self.publish_credit(message.body.len()).await;
        let pending = match self.publish(&incoming.publish, &message).await? {
            // The credit comes back once the backend has the message.
            Pending::Persist(future) => Pending::Persist(Box::pin(async move {
                let persisted = future.await;
                drop(credit);
                persisted
            })),
            done => done,
        };
        if let Some((next, confirmer)) = self.confirms.as_mut() {
            let _ = confirmer.send((*next, pending));
            *next += 1;
        } else if let Pending::Persist(future) = pending {
            tokio::spawn(future);
        }
        Ok(())
    }

    /// Takes credit for a message's bytes on their way to the backend. When the backend falls
    /// behind and the credit runs out, the client is told (connection.blocked) and this
    /// connection stops reading until the backend catches up (connection.unblocked).
    pub(super) async fn publish_credit(&self, bytes: usize) -> gateway_core::budget::Credit {
        let credit = &self.session.frontend.unpersisted;
        if let Some(permit) = credit.try_acquire(bytes) {
            return permit;
        }
        let blocked = self.session.accepts_blocked;
        if blocked {
            let _ = self
                .session
                .out
                .send(vec![AMQPFrame::Method(
                    0,
                    AMQPClass::Connection(connection::AMQPMethod::Blocked(connection::Blocked {
                        reason: "the message store is behind; publishing paused".into(),
                    })),
                )])
                .await;
        }
        let permit = credit.acquire(bytes).await;
        if blocked {
            let _ = self
                .session
                .out
                .send(vec![AMQPFrame::Method(
                    0,
                    AMQPClass::Connection(connection::AMQPMethod::Unblocked(
                        connection::Unblocked {},
                    )),
                )])
                .await;
        }
        permit
    }

    /// Routes and queues one message; returns what its confirm waits for.
    pub(super) async fn publish(
        &self,
        method: &basic::Publish,
        message: &AmqpMessage,
    ) -> AmqpResult<Pending> {
        let route = publish::route(
            &self.session.vhost,
            &message.exchange,
            &message.routing_key,
            message.properties.headers().as_ref(),
        )
        .await
        .map_err(|e| e.on_method(60, 40))?;
        match route {
            Route::Topic(topic) => self.store(topic, message).await,
            Route::Unroutable => {
                if method.mandatory {
                    let frames = delivery::content_frames(
                        self.id,
                        basic::AMQPMethod::Return(basic::Return {
                            reply_code: ReplyCode::NoRoute as u16,
                            reply_text: "NO_ROUTE".into(),
                            exchange: message.exchange.as_str().into(),
                            routing_key: message.routing_key.as_str().into(),
                        }),
                        message,
                        self.session.frame_max,
                    );
                    let _ = self.session.out.send(frames).await;
                }
                Ok(Pending::Done(true))
            }
        }
    }

    /// Writes a routed message, applying its queues' length limits; the confirm is a nack when
    /// a full queue refused it.
    pub(super) async fn store(
        &self,
        topic: gateway_core::TopicName,
        message: &AmqpMessage,
    ) -> AmqpResult<Pending> {
        let session = &self.session;
        let destinations = publish::destinations(
            &*session.vhost.snapshot().await,
            &message.exchange,
            &message.routing_key,
            message.properties.headers().as_ref(),
        );
        if let Some(access) = &session.access {
            access
                .check_write(
                    &session.frontend.backend,
                    &session.vhost,
                    &session.user,
                    &message.exchange,
                    &topic,
                )
                .await
                .map_err(|e| e.on_method(60, 40))?;
        }
        let decision = crate::limits::decide(session, &destinations, message).await?;
        if decision.refused_everywhere {
            return Ok(Pending::Done(false));
        }
        let marks = if decision.refused.is_empty() {
            Vec::new()
        } else {
            let refused: Vec<String> = decision.refused.iter().map(|i| format!("{i:x}")).collect();
            vec![(delivery::REJECTED_BY.to_owned(), refused.join(","))]
        };
        let persisted = match publish::submit_marked(
            &session.frontend.backend,
            &topic,
            message,
            marks,
        )
        .await
        {
            Ok(persisted) => persisted,
            // A publisher waiting for confirms learns of a passing backend failure (a time-out,
            // a lost connection) from a nack, as RabbitMQ tells it; without confirms, only
            // closing the connection can tell it.
            // Per message at debug: during an outage every publish fails, and the backend's own
            // health line already says why.
            Err(e) if e.is_retriable() && self.confirms.is_some() => {
                tracing::debug!(error = %e, "a published message could not be handed to the backend; nack");
                metrics::counter!("amqp_publish_failures_total", "stage" => "submit").increment(1);
                return Ok(Pending::Done(false));
            }
            Err(e) => return Err(e.into()),
        };
        let accepted_everywhere = decision.refused.is_empty();
        let session = session.clone();
        Ok(Pending::Persist(Box::pin(async move {
            match persisted.await {
                Ok(_) => {
                    for (queue, policy) in &decision.trim {
                        crate::limits::trim_head(&session, queue, policy).await;
                    }
                    accepted_everywhere
                }
                Err(e) => {
                    tracing::debug!(error = %e, "a published message was not persisted");
                    metrics::counter!("amqp_publish_failures_total", "stage" => "persist")
                        .increment(1);
                    false
                }
            }
        })))
    }
}

/// Sends confirms in publish order as each publish is persisted (a failed one is nacked).
pub(super) fn spawn_confirmer(
    channel: u16,
    out: mpsc::Sender<Vec<AMQPFrame>>,
) -> mpsc::UnboundedSender<(u64, Pending)> {
    let (tx, mut rx) = mpsc::unbounded_channel::<(u64, Pending)>();
    tokio::spawn(async move {
        while let Some((seq, pending)) = rx.recv().await {
            let ok = match pending {
                Pending::Done(ok) => ok,
                Pending::Persist(future) => future.await,
            };
            let method = if ok {
                basic::AMQPMethod::Ack(basic::Ack {
                    delivery_tag: seq,
                    multiple: false,
                })
            } else {
                basic::AMQPMethod::Nack(basic::Nack {
                    delivery_tag: seq,
                    multiple: false,
                    requeue: false,
                })
            };
            if out
                .send(vec![AMQPFrame::Method(channel, AMQPClass::Basic(method))])
                .await
                .is_err()
            {
                return;
            }
        }
    });
    tx
}
