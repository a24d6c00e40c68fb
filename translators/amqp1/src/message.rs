//! AMQP 1.0 messages (core spec §3.2) in Pulsar messages, as docs/jms.md describes.
//!
//! The sections are kept as the client encoded them, so that what a JMS client put in them
//! comes back byte for byte:
//!
//! - a body that is a single `data` section is the Pulsar payload as it is, so Kafka, AMQP 0-9-1
//!   and native Pulsar consumers read the bytes the sender sent; a single `amqp-value` string
//!   (a JMS TextMessage) is the payload as UTF-8, marked `amqp1.body` = `text`, so they read the
//!   text; any other body (`amqp-value`, `amqp-sequence`, several `data` sections) is the payload
//!   as encoded sections, marked with the property `amqp1.body` = `sections`;
//! - header, message-annotations, properties, application-properties and footer are Pulsar
//!   properties `amqp1.<section>`, each the section's encoding in base64 (Pulsar properties are
//!   strings);
//! - delivery-annotations are for one hop only (§3.2.2) and are dropped.
//!
//! Besides, so that Kafka, AMQP 0-9-1 and Starlight for JMS (S4J) consumers see them, a message
//! also gets the Pulsar properties S4J writes (`interop_properties`): each application property
//! as a plain string, with S4J's `<name>_jsmtype` companion for a non-string type,
//! `JMSPulsarMessageType`, `JMSType`, `JMSPriority`, `JMSDeliveryMode`, `JMSExpiration`,
//! `JMSCorrelationID` (base64), `JMSReplyTo` (a full topic name) with `JMSReplyToType`, and
//! `JMSXGroupSeq`; the group-id (`JMSXGroupID`) is the Pulsar key. AMQP 1.0 consumers ignore
//! them and get the sections back.
//!
//! A message without `amqp1.*` properties (from another protocol) is delivered with its Pulsar
//! properties as application-properties, typed again by their `_jsmtype` companions, but for
//! S4J's header properties, which go back to the header and properties sections as Qpid JMS
//! reads them; its event time as the creation-time (JMSTimestamp), its key as the group-id
//! (JMSXGroupID), and as a JMS text message (an `amqp-value` string) when
//! `JMSPulsarMessageType` is `text`, else as one `data` section.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use fe2o3_amqp_types::messaging::annotations::OwnedKey;
use fe2o3_amqp_types::messaging::{
    AmqpValue, ApplicationProperties, Data, Header, MessageAnnotations, Properties,
};
use fe2o3_amqp_types::messaging::{MessageId, Priority};
use fe2o3_amqp_types::primitives::{OrderedMap, SimpleValue, Symbol, Timestamp, Value};
use gateway_core::{Message, TopicName};

/// Pulsar property names; the prefix keeps them apart from properties of other protocols.
pub const PREFIX: &str = "amqp1.";
const BODY: &str = "amqp1.body";
const BODY_SECTIONS: &str = "sections";
const BODY_TEXT: &str = "text";

/// S4J's names (docs/jms.md, "Messages").
pub const JSM_TYPE_SUFFIX: &str = "_jsmtype";
pub const S4J_MESSAGE_TYPE: &str = "JMSPulsarMessageType";
pub const S4J_EXPIRATION: &str = "JMSExpiration";
const S4J_CORRELATION_ID: &str = "JMSCorrelationID";
const S4J_REPLY_TO: &str = "JMSReplyTo";
const S4J_REPLY_TO_TYPE: &str = "JMSReplyToType";
const S4J_GROUP_SEQ: &str = "JMSXGroupSeq";
/// S4J's properties for JMS headers: on a message from another protocol they are read back
/// into the header and properties sections, not shown as application properties.
const S4J_HEADERS: [&str; 12] = [
    "JMSCorrelationID",
    "JMSReplyTo",
    "JMSReplyToType",
    "JMSType",
    "JMSPriority",
    "JMSDeliveryMode",
    "JMSExpiration",
    "JMSDeliveryTime",
    "JMSMessageId",
    "JMSXGroupID",
    "JMSXGroupSeq",
    "JMSPulsarMessageType",
];
const JMS_MSG_TYPE: &str = "x-opt-jms-msg-type";
/// Qpid JMS's annotations: the reply-to's kind (0 queue, 1 topic, 2 temporary queue, 3
/// temporary topic), and a correlation-id set by the application rather than a message id.
const JMS_REPLY_TO: &str = "x-opt-jms-reply-to";
const APP_CORRELATION_ID: &str = "x-opt-app-correlation-id";
const DELIVERY_TIME: &str = "x-opt-delivery-time";

/// Section descriptor codes (§3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Section {
    Header = 0x70,
    DeliveryAnnotations = 0x71,
    MessageAnnotations = 0x72,
    Properties = 0x73,
    ApplicationProperties = 0x74,
    Data = 0x75,
    AmqpSequence = 0x76,
    AmqpValue = 0x77,
    Footer = 0x78,
}

impl Section {
    fn from_code(code: u64) -> Option<Section> {
        Some(match code {
            0x70 => Section::Header,
            0x71 => Section::DeliveryAnnotations,
            0x72 => Section::MessageAnnotations,
            0x73 => Section::Properties,
            0x74 => Section::ApplicationProperties,
            0x75 => Section::Data,
            0x76 => Section::AmqpSequence,
            0x77 => Section::AmqpValue,
            0x78 => Section::Footer,
            _ => return None,
        })
    }

    fn from_name(name: &[u8]) -> Option<Section> {
        Some(match name {
            b"amqp:header:list" => Section::Header,
            b"amqp:delivery-annotations:map" => Section::DeliveryAnnotations,
            b"amqp:message-annotations:map" => Section::MessageAnnotations,
            b"amqp:properties:list" => Section::Properties,
            b"amqp:application-properties:map" => Section::ApplicationProperties,
            b"amqp:data:binary" => Section::Data,
            b"amqp:amqp-sequence:list" => Section::AmqpSequence,
            b"amqp:amqp-value:*" => Section::AmqpValue,
            b"amqp:footer:map" => Section::Footer,
            _ => return None,
        })
    }

    fn property(self) -> Option<&'static str> {
        Some(match self {
            Section::Header => "amqp1.header",
            Section::MessageAnnotations => "amqp1.message-annotations",
            Section::Properties => "amqp1.properties",
            Section::ApplicationProperties => "amqp1.application-properties",
            Section::Footer => "amqp1.footer",
            _ => return None,
        })
    }

    fn is_body(self) -> bool {
        matches!(
            self,
            Section::Data | Section::AmqpSequence | Section::AmqpValue
        )
    }
}

/// Which section an encoded described value is: its descriptor is a ulong code or a symbol.
fn classify(raw: &[u8]) -> Option<Section> {
    match raw {
        [0x00, 0x53, code, ..] => Section::from_code(*code as u64),
        [0x00, 0x80, rest @ ..] if rest.len() >= 8 => {
            Section::from_code(u64::from_be_bytes(rest[..8].try_into().ok()?))
        }
        [0x00, 0xa3, len, rest @ ..] => Section::from_name(rest.get(..*len as usize)?),
        _ => None,
    }
}

/// Splits an encoded message into its sections, checking their order (§3.2: header,
/// delivery-annotations, message-annotations, properties, application-properties, body,
/// footer; each at most once except body sections).
fn sections(mut payload: &[u8]) -> Result<Vec<(Section, Bytes)>, String> {
    let mut out: Vec<(Section, Bytes)> = Vec::new();
    while !payload.is_empty() {
        let len = crate::encoding::value_len(payload)
            .ok_or("a message section is malformed or longer than the message")?;
        let raw = Bytes::copy_from_slice(&payload[..len]);
        payload = &payload[len..];
        let section = classify(&raw).ok_or("not a message section")?;
        if let Some((last, _)) = out.last() {
            let repeatable = matches!(section, Section::Data | Section::AmqpSequence);
            if section < *last || (section == *last && !repeatable) {
                return Err(format!("message section {section:?} out of order"));
            }
            if last.is_body() && section.is_body() && section != *last {
                return Err("a message body mixes section kinds".into());
            }
        }
        out.push((section, raw));
    }
    // The core spec asks for a body, but Qpid JMS sends a plain JMS Message without one; it
    // is kept as it is (an empty payload marked `sections`).
    Ok(out)
}

/// The Pulsar message for an AMQP message encoded as `payload`; `topic_of` names the Pulsar
/// topic of an address (for the reply-to).
pub fn to_pulsar(
    payload: &[u8],
    topic_of: &dyn Fn(&str) -> Option<TopicName>,
) -> Result<Message, String> {
    let sections = sections(payload)?;
    let mut properties = Vec::new();
    let bodies: Vec<&(Section, Bytes)> = sections.iter().filter(|(s, _)| s.is_body()).collect();
    let value = match bodies.as_slice() {
        [(Section::Data, raw)] => {
            let Data(bytes) =
                serde_amqp::from_slice(raw).map_err(|e| format!("data section: {e}"))?;
            Bytes::from(bytes.into_vec())
        }
        // A JMS TextMessage: stored as its text, so that other protocols read the text.
        [(Section::AmqpValue, raw)] if text_value(raw).is_some() => {
            properties.push((BODY.to_owned(), BODY_TEXT.to_owned()));
            Bytes::from(text_value(raw).unwrap_or_default())
        }
        _ => {
            properties.push((BODY.to_owned(), BODY_SECTIONS.to_owned()));
            let mut joined = Vec::new();
            for (_, raw) in &bodies {
                joined.extend_from_slice(raw);
            }
            Bytes::from(joined)
        }
    };
    for (section, raw) in &sections {
        if let Some(name) = section.property() {
            properties.push((name.to_owned(), STANDARD.encode(raw)));
        }
    }
    let (event_time, key) = interop_properties(&sections, now_millis(), topic_of, &mut properties);
    Ok(Message {
        key,
        value: Some(value),
        properties,
        event_time,
        deliver_at: delivery_time(&sections),
    })
}

/// The message annotation `x-opt-delivery-time` (ms since the epoch) that Qpid JMS sends for a
/// delivery delay, once the connection offered `DELAYED_DELIVERY`; as Artemis, a timestamp or
/// any integer is taken. The annotation itself stays in the message, so receivers read it back
/// as `JMSDeliveryTime`.
fn delivery_time(sections: &[(Section, Bytes)]) -> Option<u64> {
    let (_, raw) = sections
        .iter()
        .find(|(s, _)| *s == Section::MessageAnnotations)?;
    let MessageAnnotations(a) = serde_amqp::from_slice(raw).ok()?;
    let at = match a.get(&OwnedKey::Symbol(Symbol::from(DELIVERY_TIME)))? {
        Value::Timestamp(t) => t.milliseconds(),
        Value::Long(v) => *v,
        Value::Ulong(v) => i64::try_from(*v).ok()?,
        Value::Int(v) => i64::from(*v),
        Value::Uint(v) => i64::from(*v),
        _ => return None,
    };
    u64::try_from(at).ok().filter(|at| *at > 0)
}

/// The string an encoded `amqp-value` section holds, if it holds a string.
fn text_value(raw: &[u8]) -> Option<String> {
    match serde_amqp::from_slice::<AmqpValue<Value>>(raw) {
        Ok(AmqpValue(Value::String(s))) => Some(s),
        _ => None,
    }
}

/// Milliseconds since the epoch.
pub fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A simple value as S4J stores a JMS property: its string form and its `_jsmtype`, none for
/// strings. `None` for types a JMS property cannot have.
fn s4j_property(value: &SimpleValue) -> Option<(String, Option<&'static str>)> {
    Some(match value {
        SimpleValue::String(s) => (s.clone(), None),
        SimpleValue::Bool(b) => (b.to_string(), Some("boolean")),
        SimpleValue::Byte(b) => (b.to_string(), Some("byte")),
        SimpleValue::Short(v) => (v.to_string(), Some("short")),
        SimpleValue::Int(v) => (v.to_string(), Some("int")),
        SimpleValue::Long(v) => (v.to_string(), Some("long")),
        SimpleValue::Float(v) => (java_float(v.0, format!("{:?}", v.0)), Some("float")),
        SimpleValue::Double(v) => (java_float(v.0, format!("{:?}", v.0)), Some("double")),
        _ => return None,
    })
}

/// A float as Java's `toString` writes it, closely enough for `parseFloat`/`parseDouble`:
/// `shortest` (Rust's shortest round-tripping form) but for Java's names of NaN and infinities.
fn java_float<F: Into<f64>>(v: F, shortest: String) -> String {
    let v: f64 = v.into();
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "Infinity" } else { "-Infinity" }.into()
    } else {
        shortest
    }
}

/// A property value typed by its S4J `_jsmtype` companion; a string if there is none or it
/// does not parse.
fn typed_property(value: &str, jsm_type: Option<&str>) -> SimpleValue {
    let typed = match jsm_type {
        Some("boolean") => value.parse().ok().map(SimpleValue::Bool),
        Some("byte") => value.parse().ok().map(SimpleValue::Byte),
        Some("short") => value.parse().ok().map(SimpleValue::Short),
        Some("int") => value.parse().ok().map(SimpleValue::Int),
        Some("long") => value.parse().ok().map(SimpleValue::Long),
        Some("float") => parse_java_float(value).map(|v| SimpleValue::from(v as f32)),
        Some("double") => parse_java_float(value).map(SimpleValue::from),
        _ => None,
    };
    typed.unwrap_or_else(|| SimpleValue::String(value.to_owned()))
}

fn parse_java_float(value: &str) -> Option<f64> {
    match value {
        "NaN" => Some(f64::NAN),
        "Infinity" => Some(f64::INFINITY),
        "-Infinity" => Some(f64::NEG_INFINITY),
        _ => value.parse().ok(),
    }
}

/// S4J's `JMSPulsarMessageType` for Qpid JMS's `x-opt-jms-msg-type` annotation.
fn s4j_message_type(code: i8) -> Option<&'static str> {
    Some(match code {
        0 => "header",
        1 => "object",
        2 => "map",
        3 => "bytes",
        4 => "stream",
        5 => "text",
        _ => return None,
    })
}

/// Adds the Pulsar properties S4J and other protocols read (docs/jms.md, "Messages"), and
/// returns the event time (the creation-time, S4J's `JMSTimestamp`) and the key (the
/// group-id, S4J's `JMSXGroupID`).
fn interop_properties(
    sections: &[(Section, Bytes)],
    now: u64,
    topic_of: &dyn Fn(&str) -> Option<TopicName>,
    properties: &mut Vec<(String, String)>,
) -> (Option<u64>, Option<Bytes>) {
    let raw = |which: Section| {
        sections
            .iter()
            .find(|(s, _)| *s == which)
            .map(|(_, r)| r.as_ref())
    };
    let header: Option<Header> = raw(Section::Header).and_then(|r| serde_amqp::from_slice(r).ok());
    let props: Option<Properties> =
        raw(Section::Properties).and_then(|r| serde_amqp::from_slice(r).ok());
    let annotations: Option<MessageAnnotations> =
        raw(Section::MessageAnnotations).and_then(|r| serde_amqp::from_slice(r).ok());
    let app: Option<ApplicationProperties> =
        raw(Section::ApplicationProperties).and_then(|r| serde_amqp::from_slice(r).ok());

    if let Some(ApplicationProperties(map)) = &app {
        for (name, value) in map.iter() {
            if name.starts_with(PREFIX) {
                continue;
            }
            if let Some((text, jsm_type)) = s4j_property(value) {
                properties.push((name.clone(), text));
                if let Some(t) = jsm_type {
                    properties.push((format!("{name}{JSM_TYPE_SUFFIX}"), t.to_owned()));
                }
            }
        }
    }
    let msg_type = annotations.as_ref().and_then(|MessageAnnotations(a)| {
        match a.get(&OwnedKey::Symbol(Symbol::from(JMS_MSG_TYPE)))? {
            Value::Byte(code) => s4j_message_type(*code),
            _ => None,
        }
    });
    if let Some(t) = msg_type {
        properties.push((S4J_MESSAGE_TYPE.into(), t.into()));
    }
    if let Some(subject) = props.as_ref().and_then(|p| p.subject.as_ref()) {
        properties.push(("JMSType".into(), subject.clone()));
    }
    if let Some(h) = &header {
        if h.priority.0 != 4 {
            properties.push(("JMSPriority".into(), h.priority.0.to_string()));
        }
    }
    // No header is a header with its defaults: not durable (§3.2.1).
    if !header.as_ref().is_some_and(|h| h.durable) {
        properties.push(("JMSDeliveryMode".into(), "1".into()));
    }
    let expiry = props
        .as_ref()
        .and_then(|p| p.absolute_expiry_time.as_ref())
        .map(|t| t.milliseconds().max(0) as u64)
        .or_else(|| {
            header
                .as_ref()
                .and_then(|h| h.ttl)
                .filter(|ttl| *ttl > 0)
                .map(|ttl| now.saturating_add(ttl as u64))
        });
    if let Some(expiry) = expiry {
        properties.push((S4J_EXPIRATION.into(), expiry.to_string()));
        properties.push((format!("{S4J_EXPIRATION}{JSM_TYPE_SUFFIX}"), "long".into()));
    }
    let annotation = |name: &str| {
        annotations
            .as_ref()
            .and_then(|MessageAnnotations(a)| a.get(&OwnedKey::Symbol(Symbol::from(name))))
    };
    if let Some(id) = props.as_ref().and_then(|p| p.correlation_id.as_ref()) {
        // S4J keeps the correlation id's bytes in base64: the string's UTF-8, or the bytes of
        // a binary one (JMS `setJMSCorrelationIDAsBytes`).
        let bytes = match id {
            MessageId::String(s) => s.as_bytes().to_vec(),
            MessageId::Binary(b) => b.to_vec(),
            other => qpid_id_string(other).into_bytes(),
        };
        properties.push((S4J_CORRELATION_ID.into(), STANDARD.encode(bytes)));
    }
    let reply_to = props.as_ref().and_then(|p| p.reply_to.as_deref());
    if let Some(topic) = reply_to.and_then(topic_of) {
        properties.push((S4J_REPLY_TO.into(), topic.to_string()));
        // S4J marks topics only; anything else is a queue.
        if matches!(annotation(JMS_REPLY_TO), Some(Value::Byte(1 | 3))) {
            properties.push((S4J_REPLY_TO_TYPE.into(), "topic".into()));
        }
    }
    if let Some(seq) = props.as_ref().and_then(|p| p.group_sequence) {
        // A Java int, as `setIntProperty` would make it, where it fits.
        let jsm_type = if i32::try_from(seq).is_ok() {
            "int"
        } else {
            "long"
        };
        properties.push((S4J_GROUP_SEQ.into(), seq.to_string()));
        properties.push((format!("{S4J_GROUP_SEQ}{JSM_TYPE_SUFFIX}"), jsm_type.into()));
    }
    let event_time = props
        .as_ref()
        .and_then(|p| p.creation_time.as_ref())
        .map(|t| t.milliseconds().max(0) as u64);
    let key = props
        .as_ref()
        .and_then(|p| p.group_id.as_ref())
        .map(|g| Bytes::copy_from_slice(g.as_bytes()));
    (event_time, key)
}

/// How Qpid JMS writes a non-string message id as a JMS id (`AmqpMessageIdHelper`).
fn qpid_id_string(id: &MessageId) -> String {
    match id {
        MessageId::String(s) => s.clone(),
        MessageId::Ulong(n) => format!("ID:AMQP_ULONG:{n}"),
        MessageId::Uuid(u) => {
            let hex: String = u.as_inner().iter().map(|b| format!("{b:02x}")).collect();
            format!(
                "ID:AMQP_UUID:{}-{}-{}-{}-{}",
                &hex[..8],
                &hex[8..12],
                &hex[12..16],
                &hex[16..20],
                &hex[20..]
            )
        }
        MessageId::Binary(b) => {
            let hex: String = b.iter().map(|b| format!("{b:02X}")).collect();
            format!("ID:AMQP_BINARY:{hex}")
        }
    }
}

/// When the message expires (ms since the epoch): S4J's `JMSExpiration`, which `to_pulsar`
/// writes from the header's ttl or the properties' absolute-expiry-time.
pub fn expiration(message: &Message) -> Option<u64> {
    pulsar_property(message, S4J_EXPIRATION)
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|e| *e > 0)
}

/// The AMQP encoding of a Pulsar message, delivered for the `redelivery_count`-th time after
/// the first (which the header's delivery-count says, §3.2.1).
pub fn from_pulsar(message: &Message, redelivery_count: u32) -> Vec<u8> {
    let property = |name: &str| {
        message
            .properties
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| STANDARD.decode(v).ok())
    };
    let from_amqp1 = message
        .properties
        .iter()
        .any(|(k, _)| k.starts_with(PREFIX));
    let mut out = Vec::new();
    let mut header: Option<Header> = if from_amqp1 {
        property("amqp1.header").and_then(|raw| serde_amqp::from_slice(&raw).ok())
    } else {
        // A header with the defaults says nothing: left out.
        Some(foreign_header(message)).filter(|h| *h != Header::default())
    };
    if redelivery_count > 0 {
        let h = header.get_or_insert_with(Header::default);
        h.delivery_count = redelivery_count;
        h.first_acquirer = false;
    }
    if let Some(h) = header {
        if let Ok(raw) = serde_amqp::to_vec(&h) {
            out.extend_from_slice(&raw);
        }
    }
    if !from_amqp1 {
        return foreign_sections(message, out);
    }
    for name in ["amqp1.message-annotations", "amqp1.properties"] {
        if let Some(raw) = property(name) {
            out.extend_from_slice(&raw);
        }
    }
    if let Some(raw) = property("amqp1.application-properties") {
        out.extend_from_slice(&raw);
    }
    let value = message.value.clone().unwrap_or_default();
    let body = message
        .properties
        .iter()
        .find(|(k, _)| k == BODY)
        .map(|(_, v)| v.as_str());
    if body == Some(BODY_SECTIONS) {
        out.extend_from_slice(&value);
    } else if body == Some(BODY_TEXT) {
        let text = String::from_utf8_lossy(&value).into_owned();
        if let Ok(raw) = serde_amqp::to_vec(&AmqpValue(text)) {
            out.extend_from_slice(&raw);
        }
    } else if let Ok(raw) = serde_amqp::to_vec(&Data(value.to_vec().into())) {
        out.extend_from_slice(&raw);
    }
    if let Some(raw) = property("amqp1.footer") {
        out.extend_from_slice(&raw);
    }
    out
}

/// The value of Pulsar property `name`, if the message has it.
pub(crate) fn pulsar_property<'m>(message: &'m Message, name: &str) -> Option<&'m str> {
    message
        .properties
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// The header of a message from another protocol, from S4J's properties: persistent unless
/// `JMSDeliveryMode` is 1 (NON_PERSISTENT), as S4J reads it, and its `JMSPriority`.
fn foreign_header(message: &Message) -> Header {
    Header {
        durable: pulsar_property(message, "JMSDeliveryMode") != Some("1"),
        priority: Priority(
            pulsar_property(message, "JMSPriority")
                .and_then(|p| p.parse::<u8>().ok())
                .filter(|p| *p <= 9)
                .unwrap_or(4),
        ),
        ..Header::default()
    }
}

/// The application-properties of a message from another protocol: its Pulsar properties,
/// typed by S4J's `_jsmtype` companions (which are not shown themselves), without S4J's
/// header properties (`S4J_HEADERS`).
pub fn foreign_properties(message: &Message) -> OrderedMap<String, SimpleValue> {
    let companion = |name: &str| {
        let wanted = format!("{name}{JSM_TYPE_SUFFIX}");
        message
            .properties
            .iter()
            .find(|(k, _)| *k == wanted)
            .map(|(_, v)| v.as_str())
    };
    message
        .properties
        .iter()
        .filter(|(k, _)| {
            !k.starts_with(PREFIX)
                && !k.ends_with(JSM_TYPE_SUFFIX)
                && !S4J_HEADERS.contains(&k.as_str())
        })
        .map(|(k, v)| (k.clone(), typed_property(v, companion(k))))
        .collect()
}

/// `out` (the header) followed by the sections of a message from another protocol, with S4J's
/// header properties where Qpid JMS reads them, as `to_pulsar` maps them the other way: the
/// event time is the creation-time (JMSTimestamp), the key the group-id (JMSXGroupID).
fn foreign_sections(message: &Message, mut out: Vec<u8>) -> Vec<u8> {
    let value = message.value.clone().unwrap_or_default();
    let text = pulsar_property(message, S4J_MESSAGE_TYPE) == Some("text");
    let mut annotations = OrderedMap::new();
    let mut annotate = |name: &str, value: Value| {
        annotations.insert(OwnedKey::Symbol(Symbol::from(name)), value);
    };
    if text {
        // Qpid JMS: 5 is a TextMessage (and 3 a BytesMessage, its default for a data body).
        annotate(JMS_MSG_TYPE, Value::Byte(5));
    }
    let correlation_id = pulsar_property(message, S4J_CORRELATION_ID).map(|v| {
        // As S4J reads it: base64 of the bytes, or (not base64) the text itself.
        match STANDARD.decode(v) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(s) => MessageId::String(s),
                Err(e) => MessageId::Binary(e.into_bytes().into()),
            },
            Err(_) => MessageId::String(v.to_owned()),
        }
    });
    if matches!(correlation_id, Some(MessageId::String(_))) {
        // Shown to the application as it is, not taken for a message id.
        annotate(APP_CORRELATION_ID, Value::Bool(true));
    }
    let reply_to = pulsar_property(message, S4J_REPLY_TO).map(str::to_owned);
    if reply_to.is_some() {
        let topic = pulsar_property(message, S4J_REPLY_TO_TYPE) == Some("topic");
        annotate(JMS_REPLY_TO, Value::Byte(if topic { 1 } else { 0 }));
    }
    if !annotations.is_empty() {
        if let Ok(raw) = serde_amqp::to_vec(&MessageAnnotations(annotations)) {
            out.extend_from_slice(&raw);
        }
    }
    let properties = Properties {
        subject: pulsar_property(message, "JMSType").map(str::to_owned),
        correlation_id,
        reply_to,
        absolute_expiry_time: expiration(message).map(|ms| Timestamp::from_milliseconds(ms as i64)),
        creation_time: message
            .event_time
            .map(|ms| Timestamp::from_milliseconds(ms as i64)),
        // The key as S4J shows it: a binary one as Pulsar keeps it, in base64.
        group_id: message.key.as_ref().map(|k| match std::str::from_utf8(k) {
            Ok(s) => s.to_owned(),
            Err(_) => STANDARD.encode(k),
        }),
        group_sequence: pulsar_property(message, S4J_GROUP_SEQ).and_then(|v| v.parse().ok()),
        ..Properties::default()
    };
    if properties != Properties::default() {
        if let Ok(raw) = serde_amqp::to_vec(&properties) {
            out.extend_from_slice(&raw);
        }
    }
    let app = foreign_properties(message);
    if !app.is_empty() {
        if let Ok(raw) = serde_amqp::to_vec(&ApplicationProperties(app)) {
            out.extend_from_slice(&raw);
        }
    }
    let body = if text {
        serde_amqp::to_vec(&AmqpValue(String::from_utf8_lossy(&value).into_owned()))
    } else {
        serde_amqp::to_vec(&Data(value.to_vec().into()))
    };
    if let Ok(raw) = body {
        out.extend_from_slice(&raw);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Addresses as the gateway names their topics by default.
    fn local(address: &str) -> Option<TopicName> {
        TopicName::parse(address, "public", "default")
    }

    fn encode<T: serde::Serialize>(v: &T) -> Vec<u8> {
        serde_amqp::to_vec(v).unwrap()
    }

    #[test]
    fn a_data_body_is_the_payload_and_the_other_sections_come_back_as_sent() {
        let mut wire = encode(&Header {
            durable: true,
            ..Header::default()
        });
        let props = Properties {
            subject: Some("s".into()),
            ..Properties::default()
        };
        wire.extend(encode(&props));
        let mut app = OrderedMap::new();
        app.insert("n".to_string(), SimpleValue::Int(3));
        wire.extend(encode(&ApplicationProperties(app)));
        wire.extend(encode(&Data(b"hello".to_vec().into())));

        let m = to_pulsar(&wire, &local).unwrap();
        assert_eq!(m.value.as_deref(), Some(&b"hello"[..]));
        assert_eq!(from_pulsar(&m, 0), wire);
    }

    #[test]
    fn a_text_body_is_the_payload_as_utf8_and_comes_back_as_a_string_value() {
        for text in ["héllo ✓", ""] {
            let mut wire = encode(&Properties {
                subject: Some("s".into()),
                ..Properties::default()
            });
            wire.extend(encode(&AmqpValue(text.to_string())));
            let m = to_pulsar(&wire, &local).unwrap();
            assert_eq!(m.value.as_deref(), Some(text.as_bytes()));
            assert!(m.properties.contains(&(BODY.into(), BODY_TEXT.into())));
            assert_eq!(from_pulsar(&m, 0), wire);
        }
        // Proton-J writes a short string as str32 (0xb1): the value is kept, not the encoding.
        let mut str32 = vec![0x00, 0x53, 0x77, 0xb1, 0, 0, 0, 2];
        str32.extend(b"hi");
        let m = to_pulsar(&str32, &local).unwrap();
        assert_eq!(m.value.as_deref(), Some(&b"hi"[..]));
        assert_eq!(from_pulsar(&m, 0), encode(&AmqpValue("hi".to_string())));
    }

    #[test]
    fn a_value_body_is_kept_encoded_and_redelivery_is_counted() {
        let wire = encode(&AmqpValue(7i32));
        let m = to_pulsar(&wire, &local).unwrap();
        assert!(m.properties.contains(&(BODY.into(), BODY_SECTIONS.into())));
        assert_eq!(from_pulsar(&m, 0), wire);
        let again = from_pulsar(&m, 2);
        let mut expected = encode(&Header {
            delivery_count: 2,
            ..Header::default()
        });
        expected.extend(wire);
        assert_eq!(again, expected);
    }

    #[test]
    fn the_delivery_time_annotation_is_the_deliver_at_time() {
        for value in [
            Value::Long(1_700_000_000_123),
            Value::Ulong(1_700_000_000_123),
            Value::Timestamp(fe2o3_amqp_types::primitives::Timestamp::from_milliseconds(
                1_700_000_000_123,
            )),
        ] {
            let mut annotations = OrderedMap::new();
            annotations.insert(OwnedKey::Symbol(Symbol::from(DELIVERY_TIME)), value);
            let mut wire = encode(&MessageAnnotations(annotations));
            wire.extend(encode(&AmqpValue("later".to_string())));
            let m = to_pulsar(&wire, &local).unwrap();
            assert_eq!(m.deliver_at, Some(1_700_000_000_123));
            // The annotation travels on, for the receiver's JMSDeliveryTime.
            assert_eq!(from_pulsar(&m, 0), wire);
        }
        let mut annotations = OrderedMap::new();
        annotations.insert(
            OwnedKey::Symbol(Symbol::from(DELIVERY_TIME)),
            Value::String("soon".into()),
        );
        let mut wire = encode(&MessageAnnotations(annotations));
        wire.extend(encode(&AmqpValue("x".to_string())));
        assert_eq!(to_pulsar(&wire, &local).unwrap().deliver_at, None);
        let plain = to_pulsar(&encode(&AmqpValue("x".to_string())), &local).unwrap();
        assert_eq!(plain.deliver_at, None);
    }

    #[test]
    fn foreign_messages_are_data_with_string_properties() {
        let m = Message {
            key: None,
            value: Some(Bytes::from_static(b"x")),
            properties: vec![("k".into(), "v".into())],
            event_time: None,
            deliver_at: None,
        };
        let mut app = OrderedMap::new();
        app.insert("k".to_string(), SimpleValue::String("v".into()));
        let mut expected = persistent();
        expected.extend(encode(&ApplicationProperties(app)));
        expected.extend(encode(&Data(b"x".to_vec().into())));
        assert_eq!(from_pulsar(&m, 0), expected);
    }

    /// The header of a message from another protocol without S4J's `JMSDeliveryMode`: persistent,
    /// as S4J reads it.
    fn persistent() -> Vec<u8> {
        encode(&Header {
            durable: true,
            ..Header::default()
        })
    }

    /// The section of an encoded message that `T` decodes.
    fn section<T: serde::de::DeserializeOwned>(wire: &[u8], which: Section) -> Option<T> {
        sections(wire)
            .unwrap()
            .into_iter()
            .find(|(s, _)| *s == which)
            .map(|(_, raw)| serde_amqp::from_slice(&raw).unwrap())
    }

    fn without_sections(m: &Message) -> Message {
        Message {
            properties: m
                .properties
                .iter()
                .filter(|(k, _)| !k.starts_with(PREFIX))
                .cloned()
                .collect(),
            ..m.clone()
        }
    }

    #[test]
    fn correlation_reply_to_and_group_are_s4j_properties_and_the_key_both_ways() {
        let mut annotations = OrderedMap::new();
        annotations.insert(OwnedKey::Symbol(Symbol::from(JMS_REPLY_TO)), Value::Byte(1));
        annotations.insert(
            OwnedKey::Symbol(Symbol::from(APP_CORRELATION_ID)),
            Value::Bool(true),
        );
        let mut wire = encode(&MessageAnnotations(annotations));
        wire.extend(encode(&Properties {
            correlation_id: Some(MessageId::String("order-7".into())),
            reply_to: Some("replies".into()),
            group_id: Some("group-a".into()),
            group_sequence: Some(3),
            ..Properties::default()
        }));
        wire.extend(encode(&Data(b"x".to_vec().into())));
        let m = to_pulsar(&wire, &local).unwrap();
        let get = |name: &str| pulsar_property(&m, name);
        assert_eq!(get("JMSCorrelationID"), Some("b3JkZXItNw=="));
        assert_eq!(
            get("JMSReplyTo"),
            Some("persistent://public/default/replies")
        );
        assert_eq!(get("JMSReplyToType"), Some("topic"));
        assert_eq!(get("JMSXGroupSeq"), Some("3"));
        assert_eq!(get("JMSXGroupSeq_jsmtype"), Some("int"));
        assert_eq!(m.key.as_deref(), Some(&b"group-a"[..]));
        assert_eq!(from_pulsar(&m, 0), wire);

        // Read back as S4J wrote them (no sections): where Qpid JMS reads the headers.
        let back = from_pulsar(&without_sections(&m), 0);
        let props: Properties = section(&back, Section::Properties).unwrap();
        assert_eq!(
            props.correlation_id,
            Some(MessageId::String("order-7".into()))
        );
        assert_eq!(
            props.reply_to.as_deref(),
            Some("persistent://public/default/replies")
        );
        assert_eq!(props.group_id.as_deref(), Some("group-a"));
        assert_eq!(props.group_sequence, Some(3));
        let MessageAnnotations(a) = section(&back, Section::MessageAnnotations).unwrap();
        assert_eq!(
            a.get(&OwnedKey::Symbol(Symbol::from(JMS_REPLY_TO))),
            Some(&Value::Byte(1))
        );
        assert_eq!(
            a.get(&OwnedKey::Symbol(Symbol::from(APP_CORRELATION_ID))),
            Some(&Value::Bool(true))
        );
        // Headers are not application properties.
        assert!(section::<ApplicationProperties>(&back, Section::ApplicationProperties).is_none());
    }

    #[test]
    fn s4j_headers_of_a_foreign_message_are_read_back() {
        let m = Message {
            key: Some(Bytes::from_static(&[1, 0xff])),
            value: Some(Bytes::from_static(b"x")),
            properties: vec![
                ("JMSCorrelationID".into(), STANDARD.encode([0xca, 0xfe])),
                ("JMSReplyTo".into(), "persistent://t/n/q".into()),
                ("JMSType".into(), "kind".into()),
                ("JMSPriority".into(), "8".into()),
                ("JMSDeliveryMode".into(), "1".into()),
                ("JMSExpiration".into(), "4102444800000".into()),
                ("JMSExpiration_jsmtype".into(), "long".into()),
                ("other".into(), "shown".into()),
            ],
            event_time: Some(5),
            deliver_at: None,
        };
        let back = from_pulsar(&m, 0);
        let header: Header = section(&back, Section::Header).unwrap();
        assert!(!header.durable);
        assert_eq!(header.priority.0, 8);
        let props: Properties = section(&back, Section::Properties).unwrap();
        // Bytes that are no UTF-8 are a binary correlation id (JMS `getJMSCorrelationIDAsBytes`).
        assert_eq!(
            props.correlation_id,
            Some(MessageId::Binary(vec![0xca, 0xfe].into()))
        );
        assert_eq!(props.reply_to.as_deref(), Some("persistent://t/n/q"));
        assert_eq!(props.subject.as_deref(), Some("kind"));
        assert_eq!(props.group_id.as_deref(), Some("Af8="));
        assert_eq!(
            props.absolute_expiry_time,
            Some(Timestamp::from_milliseconds(4_102_444_800_000))
        );
        assert_eq!(props.creation_time, Some(Timestamp::from_milliseconds(5)));
        // A queue (no JMSReplyToType), and no app-correlation-id for a binary one.
        let MessageAnnotations(a) = section(&back, Section::MessageAnnotations).unwrap();
        assert_eq!(
            a.get(&OwnedKey::Symbol(Symbol::from(JMS_REPLY_TO))),
            Some(&Value::Byte(0))
        );
        assert_eq!(
            a.get(&OwnedKey::Symbol(Symbol::from(APP_CORRELATION_ID))),
            None
        );
        let ApplicationProperties(app) = section(&back, Section::ApplicationProperties).unwrap();
        assert_eq!(app.len(), 1);
        assert_eq!(app.get("other"), Some(&SimpleValue::String("shown".into())));
    }

    #[test]
    fn qpid_message_ids_as_jms_ids() {
        let uuid = serde_amqp::primitives::Uuid::from([
            0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab,
            0xcd, 0xef,
        ]);
        assert_eq!(
            qpid_id_string(&MessageId::Uuid(uuid)),
            "ID:AMQP_UUID:12345678-9abc-def0-0123-456789abcdef"
        );
        assert_eq!(qpid_id_string(&MessageId::Ulong(42)), "ID:AMQP_ULONG:42");
        assert_eq!(
            qpid_id_string(&MessageId::Binary(vec![0x0a, 0xff].into())),
            "ID:AMQP_BINARY:0AFF"
        );
    }

    fn typed_properties() -> OrderedMap<String, SimpleValue> {
        let mut app = OrderedMap::new();
        app.insert("b".to_string(), SimpleValue::Bool(true));
        app.insert("y".to_string(), SimpleValue::Byte(-7));
        app.insert("h".to_string(), SimpleValue::Short(300));
        app.insert("i".to_string(), SimpleValue::Int(-70000));
        app.insert("l".to_string(), SimpleValue::Long(1 << 40));
        app.insert("f".to_string(), SimpleValue::from(0.1f32));
        app.insert("d".to_string(), SimpleValue::from(0.1f64));
        app.insert("s".to_string(), SimpleValue::String("text".into()));
        app
    }

    #[test]
    fn application_properties_are_also_s4j_properties_and_come_back_typed() {
        let mut wire = encode(&Header {
            durable: false,
            priority: fe2o3_amqp_types::messaging::Priority(7),
            ..Header::default()
        });
        let mut annotations = OrderedMap::new();
        annotations.insert(OwnedKey::Symbol(Symbol::from(JMS_MSG_TYPE)), Value::Byte(5));
        wire.extend(encode(&MessageAnnotations(annotations)));
        wire.extend(encode(&Properties {
            subject: Some("kind".into()),
            creation_time: Some(fe2o3_amqp_types::primitives::Timestamp::from_milliseconds(
                1000,
            )),
            ..Properties::default()
        }));
        wire.extend(encode(&ApplicationProperties(typed_properties())));
        wire.extend(encode(&AmqpValue("hello".to_string())));

        let m = to_pulsar(&wire, &local).unwrap();
        let get = |name: &str| {
            m.properties
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("b"), Some("true"));
        assert_eq!(get("b_jsmtype"), Some("boolean"));
        assert_eq!(get("y_jsmtype"), Some("byte"));
        assert_eq!(get("h_jsmtype"), Some("short"));
        assert_eq!(get("i"), Some("-70000"));
        assert_eq!(get("i_jsmtype"), Some("int"));
        assert_eq!(get("l_jsmtype"), Some("long"));
        assert_eq!(get("f"), Some("0.1"));
        assert_eq!(get("f_jsmtype"), Some("float"));
        assert_eq!(get("d"), Some("0.1"));
        assert_eq!(get("d_jsmtype"), Some("double"));
        assert_eq!(get("s"), Some("text"));
        assert_eq!(get("s_jsmtype"), None);
        assert_eq!(get(S4J_MESSAGE_TYPE), Some("text"));
        assert_eq!(get("JMSType"), Some("kind"));
        assert_eq!(get("JMSPriority"), Some("7"));
        assert_eq!(get("JMSDeliveryMode"), Some("1"));
        assert_eq!(m.event_time, Some(1000));
        // An AMQP 1.0 consumer gets the sections as sent.
        assert_eq!(from_pulsar(&m, 0), wire);

        // The same Pulsar properties without the sections (as S4J or another protocol would
        // leave them) come back with their types.
        let app = foreign_properties(&without_sections(&m));
        for (k, v) in typed_properties().iter() {
            assert_eq!(app.get(k), Some(v), "{k}");
        }
    }

    #[test]
    fn ttl_and_absolute_expiry_become_jms_expiration() {
        let mut wire = encode(&Header {
            durable: true,
            ttl: Some(5000),
            ..Header::default()
        });
        wire.extend(encode(&Data(b"x".to_vec().into())));
        let mut props = Vec::new();
        let sections = sections(&wire).unwrap();
        interop_properties(&sections, 1_000_000, &local, &mut props);
        assert!(props.contains(&(S4J_EXPIRATION.into(), "1005000".into())));
        assert!(props.contains(&("JMSExpiration_jsmtype".into(), "long".into())));
        assert!(!props.iter().any(|(k, _)| k == "JMSDeliveryMode"));

        let mut wire = encode(&Properties {
            absolute_expiry_time: Some(fe2o3_amqp_types::primitives::Timestamp::from_milliseconds(
                42,
            )),
            ..Properties::default()
        });
        wire.extend(encode(&Data(b"x".to_vec().into())));
        let m = to_pulsar(&wire, &local).unwrap();
        assert_eq!(expiration(&m), Some(42));
        let plain = to_pulsar(&encode(&Data(b"x".to_vec().into())), &local).unwrap();
        assert_eq!(expiration(&plain), None);
        // Without a header it is not durable.
        assert_eq!(
            plain.properties,
            vec![("JMSDeliveryMode".to_string(), "1".to_string())]
        );
    }

    #[test]
    fn an_s4j_text_message_is_a_jms_text_message_with_typed_properties_and_its_time() {
        let m = Message {
            key: None,
            value: Some(Bytes::from_static(b"hi")),
            properties: vec![
                (S4J_MESSAGE_TYPE.into(), "text".into()),
                ("count".into(), "5".into()),
                ("count_jsmtype".into(), "int".into()),
                ("bad".into(), "x".into()),
                ("bad_jsmtype".into(), "int".into()),
            ],
            event_time: Some(1_700_000_000_123),
            deliver_at: None,
        };
        let mut annotations = OrderedMap::new();
        annotations.insert(OwnedKey::Symbol(Symbol::from(JMS_MSG_TYPE)), Value::Byte(5));
        let mut expected = persistent();
        expected.extend(encode(&MessageAnnotations(annotations)));
        // The event time is the creation-time (JMSTimestamp).
        expected.extend(encode(&Properties {
            creation_time: Some(Timestamp::from_milliseconds(1_700_000_000_123)),
            ..Properties::default()
        }));
        let mut app = OrderedMap::new();
        app.insert("count".to_string(), SimpleValue::Int(5));
        app.insert("bad".to_string(), SimpleValue::String("x".into()));
        expected.extend(encode(&ApplicationProperties(app)));
        expected.extend(encode(&AmqpValue("hi".to_string())));
        assert_eq!(from_pulsar(&m, 0), expected);
    }

    #[test]
    fn an_s4j_bytes_message_and_a_kafka_record_are_data() {
        for kind in ["bytes", "map"] {
            let m = Message {
                key: None,
                value: Some(Bytes::from_static(b"\x01\x02")),
                properties: vec![(S4J_MESSAGE_TYPE.into(), kind.into())],
                event_time: None,
                deliver_at: None,
            };
            let mut expected = persistent();
            expected.extend(encode(&Data(vec![1u8, 2].into())));
            assert_eq!(from_pulsar(&m, 0), expected);
        }
    }

    #[test]
    fn a_message_without_a_body_comes_back_without_one() {
        // A plain JMS Message from Qpid JMS.
        let wire = encode(&Header::default());
        let m = to_pulsar(&wire, &local).unwrap();
        assert!(m.properties.contains(&(BODY.into(), BODY_SECTIONS.into())));
        assert_eq!(from_pulsar(&m, 0), wire);
    }

    #[test]
    fn bad_messages_are_refused() {
        assert!(to_pulsar(&[0x00, 0x53, 0x75], &local).is_err(), "truncated");
        let mut twice = encode(&Data(b"a".to_vec().into()));
        twice.extend(encode(&Header::default()));
        assert!(to_pulsar(&twice, &local).is_err(), "header after body");
        assert!(to_pulsar(&[0x45], &local).is_err(), "not described");
    }

    proptest::proptest! {
        #[test]
        fn any_data_body_round_trips(body: Vec<u8>) {
            let wire = encode(&Data(body.clone().into()));
            let m = to_pulsar(&wire, &local).unwrap();
            proptest::prop_assert_eq!(m.value.as_deref(), Some(&body[..]));
            proptest::prop_assert_eq!(from_pulsar(&m, 0), wire);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes: Vec<u8>) {
            let _ = to_pulsar(&bytes, &local);
        }
    }
}
