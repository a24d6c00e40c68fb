//! The length of one encoded AMQP value (core spec §1.6: constructors, fixed and variable widths,
//! compound and array sizes), with every length declared inside it checked against the bytes
//! that are there.
//!
//! Why by hand: `serde_amqp` 0.18 allocates a declared length before reading it (`read_bytes`
//! is `vec![0; n]`, and its `IoReader` zero-fills `n` bytes), so a 40-byte frame declaring a
//! 4 GiB binary would cost 4 GiB; and it decodes a list cut short as a shorter one. Every frame
//! body and message section is walked here first, and only what passes is handed to
//! `serde_amqp`, as a slice of exactly that value.

/// How deep values may nest (described values, lists, maps, arrays); well beyond any real
/// message, and far from the stack's limit.
const MAX_DEPTH: u32 = 64;

/// The encoded length of the value at the start of `bytes`, or `None` when it is malformed or
/// declares more than `bytes` holds.
pub fn value_len(bytes: &[u8]) -> Option<usize> {
    value(bytes, 0)
}

fn value(b: &[u8], depth: u32) -> Option<usize> {
    if depth > MAX_DEPTH {
        return None;
    }
    let (&code, rest) = b.split_first()?;
    if code == 0x00 {
        // A described value: a descriptor, then the value it describes.
        let descriptor = value(rest, depth + 1)?;
        let described = value(rest.get(descriptor..)?, depth + 1)?;
        return Some(1 + descriptor + described);
    }
    Some(1 + data(code, rest, depth)?)
}

/// Bytes of fixed-width data for a constructor, from its subcategory (high nibble).
fn fixed_width(code: u8) -> Option<usize> {
    Some(match code >> 4 {
        0x4 => 0,
        0x5 => 1,
        0x6 => 2,
        0x7 => 4,
        0x8 => 8,
        0x9 => 16,
        _ => return None,
    })
}

fn read_width(b: &[u8], width: usize) -> Option<usize> {
    Some(match width {
        1 => *b.first()? as usize,
        _ => u32::from_be_bytes(b.get(..4)?.try_into().ok()?) as usize,
    })
}

/// The length of a value's data after its constructor `code`.
fn data(code: u8, b: &[u8], depth: u32) -> Option<usize> {
    if let Some(width) = fixed_width(code) {
        return (width <= b.len()).then_some(width);
    }
    // Variable (0xa, 0xb), compound (0xc, 0xd) and array (0xe, 0xf) widths: a size, then that
    // many bytes.
    let width: usize = match code >> 4 {
        0xa | 0xc | 0xe => 1,
        0xb | 0xd | 0xf => 4,
        _ => return None,
    };
    let len = width.checked_add(read_width(b, width)?)?;
    if len > b.len() {
        return None;
    }
    if matches!(code >> 4, 0xa | 0xb) {
        return Some(len);
    }
    // Compound and array: a count, then the elements, all inside the declared size.
    let inside = &b[width..len];
    let count = read_width(inside, width)?;
    let mut rest = inside.get(width..)?;
    if matches!(code >> 4, 0xc | 0xd) {
        // Each element takes a byte at least, so the count cannot outrun the bytes.
        if count > rest.len() {
            return None;
        }
        for _ in 0..count {
            let n = value(rest, depth + 1)?;
            rest = &rest[n..];
        }
        return Some(len);
    }
    // An array: one constructor (possibly described), then `count` data of that constructor.
    let (&first, after) = rest.split_first()?;
    let (element, mut rest) = if first == 0x00 {
        let descriptor = value(after, depth + 1)?;
        let (&element, rest) = after.get(descriptor..)?.split_first()?;
        (element, rest)
    } else {
        (first, after)
    };
    match fixed_width(element) {
        Some(width) => {
            if count.checked_mul(width)? > rest.len() {
                return None;
            }
        }
        None => {
            if count > rest.len() {
                return None;
            }
            for _ in 0..count {
                let n = data(element, rest, depth + 1)?;
                rest = &rest[n..];
            }
        }
    }
    Some(len)
}

#[cfg(test)]
mod tests {
    use super::value_len;
    use fe2o3_amqp_types::messaging::{ApplicationProperties, Data, Properties};
    use fe2o3_amqp_types::primitives::{Array, OrderedMap, SimpleValue, Symbol, Value};

    fn encoded<T: serde::Serialize>(v: &T) -> Vec<u8> {
        serde_amqp::to_vec(v).unwrap()
    }

    #[test]
    fn lengths_of_real_values_and_nothing_past_them() {
        let mut app = OrderedMap::new();
        app.insert("k".to_string(), SimpleValue::Long(-3));
        let props = Properties {
            subject: Some("s".into()),
            ..Properties::default()
        };
        let values = [
            encoded(&Data(vec![7; 300].into())),
            encoded(&ApplicationProperties(app)),
            encoded(&props),
            encoded(&Value::Array(Array(vec![
                Value::Symbol(Symbol::from("a")),
                Value::Symbol(Symbol::from("bc")),
            ]))),
            encoded(&Value::Array(Array(vec![Value::Long(1), Value::Long(2)]))),
            encoded(&Value::Null),
        ];
        for v in values {
            assert_eq!(value_len(&v), Some(v.len()), "{v:?}");
            let mut longer = v.clone();
            longer.extend_from_slice(&[1, 2, 3]);
            assert_eq!(value_len(&longer), Some(v.len()));
            for cut in 0..v.len() {
                assert_eq!(value_len(&v[..cut]), None, "{v:?} cut at {cut}");
            }
        }
    }

    #[test]
    fn huge_declared_sizes_are_refused_without_allocating() {
        // vbin32 declaring 4 GiB, inside a sasl-init-like list.
        let huge = [
            0x00, 0x53, 0x41, 0xc0, 0x07, 0x02, 0xa3, 0x00, 0xb0, 0xff, 0xff, 0xff,
        ];
        assert_eq!(value_len(&huge), None);
        assert_eq!(value_len(&[0xb0, 0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(value_len(&[0xd0, 0, 0, 0, 4, 0xff, 0xff, 0xff, 0xff]), None);
        // Nesting deeper than any message needs.
        let deep: Vec<u8> = std::iter::repeat_n(0x00, 10_000).collect();
        assert_eq!(value_len(&deep), None);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_and_never_claim_more_than_given(bytes: Vec<u8>) {
            if let Some(n) = value_len(&bytes) {
                proptest::prop_assert!(n <= bytes.len());
            }
        }
    }
}
