//! The fleet: how instances are named and reached, which instance coordinates a group, and the
//! announcements through which each instance knows its peers.

use super::*;

/// How a gateway instance is reached: its Kafka node id and advertised address, the address of
/// its Kafka TLS listener, and the internal address peers forward group requests to (each when
/// it has one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub node_id: i32,
    pub host: String,
    pub port: u16,
    pub internal: Option<String>,
    /// `host:port` that TLS clients are given, so FindCoordinator keeps them on TLS.
    pub tls: Option<String>,
}

impl Instance {
    /// The lease holder name that carries this instance's addresses to its peers.
    pub fn holder_name(&self) -> String {
        format!(
            "kafka-coordinator;node={};kafka={}:{};internal={};tls={}",
            self.node_id,
            self.host,
            self.port,
            self.internal.as_deref().unwrap_or("-"),
            self.tls.as_deref().unwrap_or("-")
        )
    }

    pub fn parse(holder: &str) -> Option<Instance> {
        let mut parts = holder.split(';');
        if parts.next()? != "kafka-coordinator" {
            return None;
        }
        let mut fields = HashMap::new();
        for part in parts {
            let (k, v) = part.split_once('=')?;
            fields.insert(k, v);
        }
        let (host, port) = fields.get("kafka")?.rsplit_once(':')?;
        Some(Instance {
            node_id: fields.get("node")?.parse().ok()?,
            host: host.to_owned(),
            port: port.parse().ok()?,
            internal: fields
                .get("internal")
                .filter(|i| **i != "-")
                .map(|i| i.to_string()),
            // Absent in the names of instances from before TLS listeners.
            tls: fields
                .get("tls")
                .filter(|t| **t != "-")
                .map(|t| t.to_string()),
        })
    }

    /// The address to give a client: the TLS listener's to a TLS client, when there is one.
    pub fn address_for(&self, tls_client: bool) -> (String, u16) {
        if tls_client {
            let tls = self.tls.as_deref().and_then(|t| t.rsplit_once(':'));
            if let Some((host, port)) = tls.and_then(|(h, p)| Some((h, p.parse().ok()?))) {
                return (host.to_owned(), port);
            }
        }
        (self.host.clone(), self.port)
    }
}

/// Where a group is coordinated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    Local,
    Remote(Instance),
}

/// How often an instance renews its announcement to the fleet and reads everyone else's.
pub(super) const FLEET_REFRESH: Duration = Duration::from_secs(2);

impl GroupCoordinator {
    /// Where a group is coordinated: here (claiming its shard if it is free) or at the instance
    /// holding the shard's lease.
    ///
    /// A lease found free after a refused claim (its holder just died) is claimed at once
    /// rather than answered COORDINATOR_NOT_AVAILABLE: librdkafka drops its coordinator
    /// connection on that error and backs off further each time, so a few such answers in a row
    /// kept a group's members from heartbeating until their sessions expired (seen in the forward
    /// fleet test: commits resumed 20 s after the coordinator died instead of within 3 s).
    pub async fn owner_of(self: &Arc<Self>, group: &str) -> Result<Owner, ResponseError> {
        let shard = self.shard_of(group);
        for _ in 0..2 {
            match self.serving(shard).await {
                Ok(()) => return Ok(Owner::Local),
                Err(ResponseError::NotCoordinator) => {}
                Err(e) => return Err(e),
            }
            match self.backend.lease_holder(&shard.topic).await {
                Ok(Some(holder)) => {
                    let owner =
                        Instance::parse(&holder).ok_or(ResponseError::CoordinatorNotAvailable)?;
                    self.note_peer(&owner);
                    return Ok(Owner::Remote(owner));
                }
                // Released since the claim was refused: claim it now.
                Ok(None) => *shard.refused_at.lock().expect("refused lock") = None,
                Err(_) => return Err(ResponseError::CoordinatorNotAvailable),
            }
        }
        Err(ResponseError::CoordinatorNotAvailable)
    }

    /// The fleet's other instances, for Metadata to list beside this one: a client told by
    /// FindCoordinator that a peer coordinates its group must also find that peer in Metadata,
    /// and Metadata from any instance must list the same brokers. librdkafka (2.10 and later)
    /// drops a broker that a Metadata answer leaves out, and a request in flight to it is lost
    /// (seen: a consumer's topic metadata request, after which it never joined its group).
    /// Empty until `start_fleet` has read the fleet once.
    pub fn peers(&self) -> Vec<Instance> {
        self.peers.lock().expect("peers lock").clone()
    }

    /// Announces this instance on the fleet topic (beside the shards' topics) and reads every
    /// live announcement every `FLEET_REFRESH`, until the coordinator is dropped. An instance
    /// that dies drops out when Pulsar sees its connection close. For addressable fleets.
    pub fn start_fleet(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut announcement: Option<Box<dyn Announcement>> = None;
            let (mut announcing, mut reading) = (RetryLog::default(), RetryLog::default());
            loop {
                let Some(this) = weak.upgrade() else {
                    return;
                };
                let topic = this.fleet_topic();
                if !announcement.as_ref().is_some_and(|a| a.is_live()) {
                    // Created first, like the shards' topics: a broker may not auto-create.
                    match this.backend.create_topic(&topic, 0).await {
                        Ok(()) | Err(BackendError::TopicAlreadyExists(_)) => {}
                        Err(e) => tracing::debug!(%topic, error = %e, "creating the fleet topic"),
                    }
                    let holder = this.settings.instance.holder_name();
                    announcement = match this.backend.announce(&topic, &holder).await {
                        Ok(a) => {
                            announcing.succeeded("announcing this instance to the fleet");
                            Some(a)
                        }
                        Err(e) => {
                            announcing.failed("announcing this instance to the fleet", &e);
                            None
                        }
                    };
                }
                match this.backend.announced(&topic).await {
                    Ok(names) => {
                        reading.succeeded("reading the fleet");
                        this.set_peers(&names);
                    }
                    Err(e) => reading.failed("reading the fleet", &e),
                }
                drop(this);
                tokio::time::sleep(FLEET_REFRESH).await;
            }
        });
    }

    pub(super) fn fleet_topic(&self) -> TopicName {
        let base = &self.settings.state_topic;
        TopicName::new(
            &base.tenant,
            &base.namespace,
            &format!("{}-fleet", base.local),
        )
    }

    pub(super) fn set_peers(&self, names: &[String]) {
        let me = self.settings.instance.node_id;
        let mut instances: Vec<Instance> = Vec::new();
        for instance in names.iter().filter_map(|n| Instance::parse(n)) {
            if instance.node_id != me && !instances.iter().any(|i| i.node_id == instance.node_id) {
                instances.push(instance);
            }
        }
        instances.sort_by_key(|i| i.node_id);
        *self.peers.lock().expect("peers lock") = instances;
    }

    /// A peer FindCoordinator just named is listed at once, before the next read.
    pub(super) fn note_peer(&self, owner: &Instance) {
        if owner.node_id == self.settings.instance.node_id {
            return;
        }
        let mut peers = self.peers.lock().expect("peers lock");
        if !peers.iter().any(|i| i == owner) {
            peers.retain(|i| i.node_id != owner.node_id);
            peers.push(owner.clone());
            peers.sort_by_key(|i| i.node_id);
        }
    }
}
