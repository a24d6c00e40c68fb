//! Exchange routing rules (spec §3.1.3 and RabbitMQ's documented behaviour): which bindings a
//! message with a routing key and headers matches.

use amq_protocol::types::{AMQPValue, FieldTable};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExchangeType {
    Direct,
    Fanout,
    Topic,
    Headers,
}

impl ExchangeType {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "direct" => Some(ExchangeType::Direct),
            "fanout" => Some(ExchangeType::Fanout),
            "topic" => Some(ExchangeType::Topic),
            "headers" => Some(ExchangeType::Headers),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ExchangeType::Direct => "direct",
            ExchangeType::Fanout => "fanout",
            ExchangeType::Topic => "topic",
            ExchangeType::Headers => "headers",
        }
    }
}

/// Whether a message published with `routing_key` and `headers` to an exchange of `kind`
/// matches a binding with `binding_key` and `arguments`.
pub fn matches(
    kind: ExchangeType,
    binding_key: &str,
    arguments: &FieldTable,
    routing_key: &str,
    headers: Option<&FieldTable>,
) -> bool {
    match kind {
        ExchangeType::Direct => binding_key == routing_key,
        ExchangeType::Fanout => true,
        ExchangeType::Topic => topic_matches(binding_key, routing_key),
        ExchangeType::Headers => headers_match(arguments, headers),
    }
}

/// Topic patterns: words separated by dots; `*` is exactly one word, `#` zero or more.
pub fn topic_matches(pattern: &str, routing_key: &str) -> bool {
    let pattern: Vec<&str> = pattern.split('.').collect();
    let key: Vec<&str> = routing_key.split('.').collect();
    // An empty key is zero words, not one empty word, for matching purposes with `#`.
    let key: &[&str] = if routing_key.is_empty() { &[] } else { &key };
    let pattern: &[&str] = if pattern == [""] { &[] } else { &pattern };
    words_match(pattern, key)
}

fn words_match(pattern: &[&str], key: &[&str]) -> bool {
    // Iterative backtracking over the last `#` seen: linear in practice, no recursion depth.
    let (mut p, mut k) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    while k < key.len() {
        match pattern.get(p) {
            Some(&"#") => {
                backtrack = Some((p, k));
                p += 1;
            }
            Some(&w) if w == "*" || w == key[k] => {
                p += 1;
                k += 1;
            }
            _ => match backtrack {
                // Let the last `#` swallow one more word and retry.
                Some((bp, bk)) => {
                    backtrack = Some((bp, bk + 1));
                    p = bp + 1;
                    k = bk + 1;
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|w| *w == "#")
}

/// Headers exchange: `x-match` is `all` (the default) or `any`; `all-with-x` and `any-with-x`
/// also compare arguments starting with `x-`, which the plain forms ignore. An argument of type
/// void matches a header that is present with any value.
pub fn headers_match(arguments: &FieldTable, headers: Option<&FieldTable>) -> bool {
    let mode = match arguments.inner().get("x-match") {
        Some(AMQPValue::LongString(s)) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        Some(AMQPValue::ShortString(s)) => s.as_str().to_owned(),
        _ => "all".to_owned(),
    };
    let (any, with_x) = match mode.as_str() {
        "any" => (true, false),
        "any-with-x" => (true, true),
        "all-with-x" => (false, true),
        _ => (false, false),
    };
    let empty = FieldTable::default();
    let headers = headers.unwrap_or(&empty).inner();
    let mut considered = arguments
        .inner()
        .iter()
        .filter(|(k, _)| k.as_str() != "x-match" && (with_x || !k.as_str().starts_with("x-")))
        .peekable();
    if considered.peek().is_none() {
        // No conditions: `all` of nothing holds; `any` of nothing does not.
        return !any;
    }
    let mut hit = |(k, v): (&amq_protocol::types::ShortString, &AMQPValue)| match headers.get(k) {
        None => false,
        Some(_) if matches!(v, AMQPValue::Void) => true,
        Some(h) => values_equal(h, v),
    };
    if any {
        considered.any(&mut hit)
    } else {
        considered.all(&mut hit)
    }
}

/// Equality across the string encodings clients choose (short or long string), as RabbitMQ
/// compares them.
fn values_equal(a: &AMQPValue, b: &AMQPValue) -> bool {
    let text = |v: &AMQPValue| match v {
        AMQPValue::LongString(s) => Some(s.as_bytes().to_vec()),
        AMQPValue::ShortString(s) => Some(s.as_str().as_bytes().to_vec()),
        _ => None,
    };
    match (text(a), text(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol::types::LongString;

    #[test]
    fn topic_patterns() {
        let cases = [
            ("a.b.c", "a.b.c", true),
            ("a.*.c", "a.b.c", true),
            ("a.*.c", "a.c", false),
            ("a.#", "a", true),
            ("a.#", "a.b.c", true),
            ("#", "", true),
            ("#", "x.y", true),
            ("a.#.z", "a.z", true),
            ("a.#.z", "a.b.c.z", true),
            ("a.#.z", "a.b.c", false),
            ("*", "", false),
            ("*.*", "a", false),
            ("#.b.#", "a.b.c", true),
            ("#.#", "", true),
            ("", "", true),
            ("", "a", false),
        ];
        for (pattern, key, want) in cases {
            assert_eq!(topic_matches(pattern, key), want, "{pattern} vs {key}");
        }
    }

    fn table(pairs: &[(&str, AMQPValue)]) -> FieldTable {
        let mut t = FieldTable::default();
        for (k, v) in pairs {
            t.insert((*k).into(), v.clone());
        }
        t
    }

    fn s(v: &str) -> AMQPValue {
        AMQPValue::LongString(LongString::from(v.as_bytes().to_vec()))
    }

    #[test]
    fn headers_all_and_any() {
        let all = table(&[("x-match", s("all")), ("a", s("1")), ("b", s("2"))]);
        let any = table(&[("x-match", s("any")), ("a", s("1")), ("b", s("2"))]);
        let both = table(&[("a", s("1")), ("b", s("2")), ("c", s("3"))]);
        let one = table(&[("a", s("1"))]);
        assert!(headers_match(&all, Some(&both)));
        assert!(!headers_match(&all, Some(&one)));
        assert!(headers_match(&any, Some(&one)));
        assert!(!headers_match(&any, None));
        // a short string in the message equals a long string in the binding
        let short = table(&[("a", AMQPValue::ShortString("1".into())), ("b", s("2"))]);
        assert!(headers_match(&all, Some(&short)));
        // void: present with any value
        let present = table(&[("a", AMQPValue::Void)]);
        assert!(headers_match(&present, Some(&one)));
        assert!(!headers_match(&present, Some(&table(&[("b", s("1"))]))));
    }
}
