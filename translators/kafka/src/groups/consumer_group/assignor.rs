//! The server-side assignors of Kafka's `group.consumer.assignors`:
//! - `uniform` (the default): every member gets as many partitions as the others, give or take
//!   one, among the topics it subscribes to; partitions stay where they were when they can, so a
//!   member joining or leaving moves only what it must;
//! - `range`: each topic's partitions in contiguous ranges over its subscribers in member id
//!   order, so that members subscribed to co-partitioned topics get the same partition numbers.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use super::{ConsumerMember, Partitions, TopicMeta};

pub const UNIFORM: &str = "uniform";
pub const RANGE: &str = "range";
/// In Kafka's order: the first is the default.
pub const ASSIGNORS: &[&str] = &[UNIFORM, RANGE];

/// The target assignment of every member (members with nothing get an empty entry), given the
/// previous target (what stickiness keeps).
pub fn assign(
    assignor: &str,
    members: &BTreeMap<String, ConsumerMember>,
    topics: &BTreeMap<String, TopicMeta>,
    previous: &BTreeMap<String, Partitions>,
) -> BTreeMap<String, Partitions> {
    let subscriptions = super::ConsumerGroup::subscriptions(members, topics);
    let subscribers = |topic: &str| -> Vec<&str> {
        subscriptions
            .iter()
            .filter(|(_, topics)| topics.contains(topic))
            .map(|(id, _)| id.as_str())
            .collect()
    };
    let mut out: BTreeMap<String, Partitions> = members
        .keys()
        .map(|id| (id.clone(), Partitions::new()))
        .collect();
    if assignor == RANGE {
        for (name, meta) in topics {
            let subs = subscribers(name);
            if subs.is_empty() {
                continue;
            }
            let n = meta.partitions.max(0) as usize;
            let (each, extra) = (n / subs.len(), n % subs.len());
            let mut next = 0;
            for (i, member) in subs.iter().enumerate() {
                let count = each + usize::from(i < extra);
                let range = (next..next + count).map(|p| p as i32);
                out.get_mut(*member)
                    .expect("listed")
                    .entry(meta.id)
                    .or_default()
                    .extend(range);
                next += count;
            }
        }
        return out;
    }
    uniform(&subscriptions, topics, previous, out)
}

/// Sticky and balanced: partitions stay with the member the previous target gave them to while
/// it still subscribes to the topic and is not above its share; the rest go to the least loaded
/// subscriber; then partitions move from the most to the least loaded member that can take them
/// until no two differ by more than one.
fn uniform(
    members: &BTreeMap<String, BTreeSet<String>>,
    topics: &BTreeMap<String, TopicMeta>,
    previous: &BTreeMap<String, Partitions>,
    mut out: BTreeMap<String, Partitions>,
) -> BTreeMap<String, Partitions> {
    let by_id: BTreeMap<Uuid, &str> = topics.iter().map(|(n, m)| (m.id, n.as_str())).collect();
    let can_take = |member: &str, topic: &Uuid| {
        by_id
            .get(topic)
            .is_some_and(|name| members[member].contains(*name))
    };
    let all: Vec<(Uuid, i32)> = topics
        .values()
        .flat_map(|m| (0..m.partitions.max(0)).map(move |p| (m.id, p)))
        .filter(|(t, _)| members.keys().any(|id| can_take(id, t)))
        .collect();
    if members.is_empty() || all.is_empty() {
        return out;
    }
    let share = all.len().div_ceil(members.len());
    let mut load: BTreeMap<&str, usize> = members.keys().map(|id| (id.as_str(), 0)).collect();
    let mut free = Vec::new();
    // Where the previous target put each partition: kept where allowed, up to the share.
    for (topic, partition) in &all {
        let owner = previous
            .iter()
            .find(|(id, p)| members.contains_key(*id) && super::contains(p, topic, *partition))
            .map(|(id, _)| id.as_str());
        match owner {
            Some(id) if can_take(id, topic) && load[id] < share => {
                out.get_mut(id)
                    .expect("member")
                    .entry(*topic)
                    .or_default()
                    .insert(*partition);
                *load.get_mut(id).expect("member") += 1;
            }
            _ => free.push((*topic, *partition)),
        }
    }
    for (topic, partition) in free {
        let least = load
            .iter()
            .filter(|(id, _)| can_take(id, &topic))
            .min_by_key(|(id, n)| (**n, **id))
            .map(|(id, _)| *id);
        if let Some(id) = least {
            out.get_mut(id)
                .expect("member")
                .entry(topic)
                .or_default()
                .insert(partition);
            *load.get_mut(id).expect("member") += 1;
        }
    }
    // Even out what subscriptions that differ between members left uneven.
    for _ in 0..all.len() {
        if !move_one(&mut out, &mut load, &can_take) {
            break;
        }
    }
    out
}

/// Moves one partition from a member with at least two more than another that can take it.
fn move_one(
    out: &mut BTreeMap<String, Partitions>,
    load: &mut BTreeMap<&str, usize>,
    can_take: &impl Fn(&str, &Uuid) -> bool,
) -> bool {
    let mut by_load: Vec<(&str, usize)> = load.iter().map(|(id, n)| (*id, *n)).collect();
    by_load.sort_by_key(|(id, n)| (std::cmp::Reverse(*n), *id));
    for (giver, given) in &by_load {
        for (taker, taken) in by_load.iter().rev() {
            if taken + 1 >= *given {
                break;
            }
            let candidate: Option<(Uuid, i32)> = out[*giver]
                .iter()
                .filter(|(t, _)| can_take(taker, t))
                .find_map(|(t, ps)| ps.iter().next_back().map(|p| (*t, *p)));
            if let Some((topic, partition)) = candidate {
                let giving = out.get_mut(*giver).expect("member");
                let in_topic = giving.get_mut(&topic).expect("found");
                in_topic.remove(&partition);
                if in_topic.is_empty() {
                    giving.remove(&topic);
                }
                out.get_mut(*taker)
                    .expect("member")
                    .entry(topic)
                    .or_default()
                    .insert(partition);
                *load.get_mut(giver).expect("member") -= 1;
                *load.get_mut(taker).expect("member") += 1;
                return true;
            }
        }
    }
    false
}
