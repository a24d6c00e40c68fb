//! JMS selectors on receiving links (docs/jms.md, "Selectors"): the filter on the link's
//! source, and the fields of a message a selector sees.
//!
//! Qpid JMS sends the selector as the filter `jms-selector`, described by the code
//! 0x0000468C00000004; proton and others by the symbol `apache.org:selector-filter:string`
//! (AMQP filters registry). Properties are read from the Pulsar properties S4J names
//! (`crate::message`), so a selector sees the same values whichever protocol sent the message.

use std::borrow::Cow;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use fe2o3_amqp_types::messaging::{FilterSet, MessageId, Properties};
use fe2o3_amqp_types::primitives::{SimpleValue, Value as AmqpValue};
use gateway_core::ReceivedMessage;
use gateway_selector::{Fields, Selector, Value};
use serde_amqp::descriptor::Descriptor;

use crate::message::{foreign_properties, PREFIX};

/// The selector filter's descriptor code and name.
pub const SELECTOR_CODE: u64 = 0x0000_468C_0000_0004;
pub const SELECTOR_NAME: &str = "apache.org:selector-filter:string";
/// The no-local filter's (AMQP filters registry; Qpid JMS sends it as `no-local`).
pub const NO_LOCAL_CODE: u64 = 0x0000_468C_0000_0003;
pub const NO_LOCAL_NAME: &str = "apache.org:no-local-filter:list";

/// The filters of a receiving link's source that the gateway serves.
#[derive(Debug, Default)]
pub struct Filters {
    pub selector: Option<Selector>,
    /// Messages the link's own connection published are not delivered (JMS `noLocal`).
    pub no_local: bool,
}

/// Why a source's filters are refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterError {
    /// A filter other than a selector or no-local: not served.
    Unsupported(String),
    /// The selector does not parse.
    Invalid(String),
}

/// The selector (`None` if there is none, or it is blank) and no-local among a source's
/// filters.
pub fn from_filters(filters: &FilterSet) -> Result<Filters, FilterError> {
    let mut found = Filters::default();
    for (key, value) in filters.iter() {
        let text = match value {
            // Its value (a list) says nothing more.
            AmqpValue::Described(d) if is(&d.descriptor, NO_LOCAL_CODE, NO_LOCAL_NAME) => {
                found.no_local = true;
                continue;
            }
            AmqpValue::Described(d) if is(&d.descriptor, SELECTOR_CODE, SELECTOR_NAME) => {
                match &d.value {
                    AmqpValue::String(s) => s.as_str(),
                    _ => {
                        return Err(FilterError::Invalid(format!(
                            "the selector filter '{}' is not a string",
                            key.as_str()
                        )))
                    }
                }
            }
            _ => return Err(FilterError::Unsupported(key.as_str().to_owned())),
        };
        found.selector = Selector::parse(text).map_err(|e| FilterError::Invalid(e.to_string()))?;
    }
    Ok(found)
}

fn is(descriptor: &Descriptor, code: u64, name: &str) -> bool {
    match descriptor {
        Descriptor::Code(c) => *c == code,
        Descriptor::Name(n) => n.as_str() == name,
    }
}

/// What a selector sees of a message: its properties, typed as S4J types them, and the JMS
/// header fields.
pub struct MessageFields<'a> {
    message: &'a ReceivedMessage,
    properties: Option<Properties>,
    application: fe2o3_amqp_types::primitives::OrderedMap<String, SimpleValue>,
}

impl<'a> MessageFields<'a> {
    pub fn new(message: &'a ReceivedMessage) -> MessageFields<'a> {
        let properties = property(message, "amqp1.properties")
            .and_then(|v| STANDARD.decode(v).ok())
            .and_then(|raw| serde_amqp::from_slice(&raw).ok());
        MessageFields {
            message,
            properties,
            application: foreign_properties(&message.message),
        }
    }
}

fn property<'m>(message: &'m ReceivedMessage, name: &str) -> Option<&'m str> {
    crate::message::pulsar_property(&message.message, name)
}

fn id_string(id: &MessageId) -> String {
    match id {
        MessageId::String(s) => s.clone(),
        MessageId::Ulong(n) => n.to_string(),
        MessageId::Uuid(u) => format!("{u:?}"),
        MessageId::Binary(b) => STANDARD.encode(b),
    }
}

impl Fields for MessageFields<'_> {
    fn field(&self, name: &str) -> Value<'_> {
        match name {
            "JMSDeliveryMode" => Value::Str(Cow::Borrowed(
                if property(self.message, "JMSDeliveryMode") == Some("1") {
                    "NON_PERSISTENT"
                } else {
                    "PERSISTENT"
                },
            )),
            "JMSPriority" => Value::Long(
                property(self.message, "JMSPriority")
                    .and_then(|p| p.parse().ok())
                    .filter(|p| (0..=9).contains(p))
                    .unwrap_or(4),
            ),
            "JMSMessageID" => {
                let id = match self.properties.as_ref().and_then(|p| p.message_id.as_ref()) {
                    Some(id) => Some(id_string(id)),
                    None => property(self.message, "JMSMessageId").map(str::to_owned),
                };
                match id {
                    Some(id) if id.starts_with("ID:") => Value::Str(Cow::Owned(id)),
                    Some(id) => Value::Str(Cow::Owned(format!("ID:{id}"))),
                    None => Value::Null,
                }
            }
            "JMSTimestamp" => match self.message.message.event_time {
                Some(t) => Value::Long(t as i64),
                None => Value::Null,
            },
            "JMSCorrelationID" => {
                if let Some(p) = &self.properties {
                    return match &p.correlation_id {
                        Some(id) => Value::Str(Cow::Owned(id_string(id))),
                        None => Value::Null,
                    };
                }
                // S4J keeps it in base64 (docs/jms.md).
                match property(self.message, "JMSCorrelationID") {
                    Some(v) => Value::Str(Cow::Owned(
                        STANDARD
                            .decode(v)
                            .ok()
                            .and_then(|b| String::from_utf8(b).ok())
                            .unwrap_or_else(|| v.to_owned()),
                    )),
                    None => Value::Null,
                }
            }
            "JMSType" => match property(self.message, "JMSType") {
                Some(t) => Value::Str(Cow::Borrowed(t)),
                None => Value::Null,
            },
            _ if name.starts_with(PREFIX) => Value::Null,
            _ => match self.application.get(name) {
                Some(SimpleValue::Bool(b)) => Value::Bool(*b),
                Some(SimpleValue::Byte(v)) => Value::Long(*v as i64),
                Some(SimpleValue::Short(v)) => Value::Long(*v as i64),
                Some(SimpleValue::Int(v)) => Value::Long(*v as i64),
                Some(SimpleValue::Long(v)) => Value::Long(*v),
                Some(SimpleValue::Float(v)) => Value::Double(v.0 as f64),
                Some(SimpleValue::Double(v)) => Value::Double(v.0),
                Some(SimpleValue::String(s)) => Value::Str(Cow::Borrowed(s)),
                _ => Value::Null,
            },
        }
    }
}

/// Whether `selector` selects `message`.
pub fn matches(selector: &Selector, message: &ReceivedMessage) -> bool {
    selector.matches(&MessageFields::new(message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use fe2o3_amqp_types::messaging::{ApplicationProperties, Data, Header};
    use fe2o3_amqp_types::primitives::{OrderedMap, Symbol};
    use gateway_core::TopicName;
    use serde_amqp::described::Described;

    fn filters(key: &str, descriptor: Descriptor, text: &str) -> FilterSet {
        let mut f = FilterSet::new();
        f.insert(
            Symbol::from(key),
            AmqpValue::Described(Box::new(Described {
                descriptor,
                value: AmqpValue::String(text.into()),
            })),
        );
        f
    }

    fn received(wire: &[u8]) -> ReceivedMessage {
        ReceivedMessage {
            id: gateway_core::MessageId {
                ledger: 1,
                entry: 2,
                batch_index: 0,
            },
            publish_time: 0,
            message: crate::message::to_pulsar(wire, &|a| TopicName::parse(a, "public", "default"))
                .unwrap(),
            redelivery_count: 0,
        }
    }

    #[test]
    fn qpid_and_proton_selector_filters_are_read_and_bad_ones_refused() {
        let qpid = filters("jms-selector", Descriptor::Code(SELECTOR_CODE), "a = 1");
        let found = from_filters(&qpid).unwrap();
        assert_eq!(found.selector.unwrap().source(), "a = 1");
        assert!(!found.no_local);
        let proton = filters(
            "selector",
            Descriptor::Name(Symbol::from(SELECTOR_NAME)),
            "b > 2",
        );
        assert!(from_filters(&proton).unwrap().selector.is_some());
        let blank = filters("jms-selector", Descriptor::Code(SELECTOR_CODE), " ");
        assert!(from_filters(&blank).unwrap().selector.is_none());
        let bad = filters("jms-selector", Descriptor::Code(SELECTOR_CODE), "a = ");
        assert!(matches!(from_filters(&bad), Err(FilterError::Invalid(_))));
        let no_local = filters("no-local", Descriptor::Code(NO_LOCAL_CODE), "x");
        let found = from_filters(&no_local).unwrap();
        assert!(found.no_local && found.selector.is_none());
        let no_local = filters("nl", Descriptor::Name(Symbol::from(NO_LOCAL_NAME)), "x");
        assert!(from_filters(&no_local).unwrap().no_local);
        let other = filters("other", Descriptor::Code(0x0000_468C_0000_0009), "x");
        assert!(matches!(
            from_filters(&other),
            Err(FilterError::Unsupported(_))
        ));
    }

    #[test]
    fn selectors_see_typed_properties_and_header_fields() {
        let mut wire = serde_amqp::to_vec(&Header {
            durable: false,
            priority: fe2o3_amqp_types::messaging::Priority(7),
            ..Header::default()
        })
        .unwrap();
        wire.extend(
            serde_amqp::to_vec(&Properties {
                message_id: Some(MessageId::String("ID:m1".into())),
                correlation_id: Some(MessageId::String("c1".into())),
                subject: Some("t".into()),
                ..Properties::default()
            })
            .unwrap(),
        );
        let mut app = OrderedMap::new();
        app.insert("n".to_string(), SimpleValue::Int(5));
        app.insert("s".to_string(), SimpleValue::String("5".into()));
        app.insert("f".to_string(), SimpleValue::from(2.5f64));
        app.insert("b".to_string(), SimpleValue::Bool(true));
        wire.extend(serde_amqp::to_vec(&ApplicationProperties(app)).unwrap());
        wire.extend(serde_amqp::to_vec(&Data(b"x".to_vec().into())).unwrap());
        let m = received(&wire);
        for (text, expected) in [
            ("n = 5", true),
            ("n > 4 AND f < 3", true),
            ("s = 5", false),
            ("s = '5'", true),
            ("b", true),
            ("missing IS NULL", true),
            ("JMSPriority = 7", true),
            ("JMSDeliveryMode = 'NON_PERSISTENT'", true),
            ("JMSMessageID = 'ID:m1'", true),
            ("JMSCorrelationID = 'c1'", true),
            ("JMSType = 't'", true),
            ("JMSTimestamp IS NULL", true),
        ] {
            let s = Selector::parse(text).unwrap().unwrap();
            assert_eq!(matches(&s, &m), expected, "{text}");
        }
        let plain = received(&serde_amqp::to_vec(&Data(b"x".to_vec().into())).unwrap());
        for (text, expected) in [
            ("JMSPriority = 4", true),
            // No header: not durable (§3.2.1), as Qpid JMS reads it too.
            ("JMSDeliveryMode = 'NON_PERSISTENT'", true),
            ("JMSMessageID IS NULL", true),
        ] {
            let s = Selector::parse(text).unwrap().unwrap();
            assert_eq!(matches(&s, &plain), expected, "{text}");
        }
    }
}
