//! A guard for amq-protocol's recursive field-table parser: a table nested thousands of levels
//! deep fits in one frame (6 bytes a level) and would overflow the stack, which aborts the whole
//! process. Before a frame is parsed, the tables it carries are walked here, iteratively, and a
//! frame nesting deeper than [`MAX_NESTING`] is refused. Only the methods a client may send with
//! a table, and content headers, carry one.

/// Tables and arrays inside each other; real clients use a handful (x-death uses three).
pub const MAX_NESTING: usize = 32;

/// Whether a method frame's payload (class id, method id, arguments) nests within the limit.
/// Payloads too short or malformed to say pass: the parser then refuses them before recursing
/// deeper than where this walk stopped.
pub fn method_within_limit(payload: &[u8]) -> bool {
    if payload.len() < 4 {
        return true;
    }
    let class = u16::from_be_bytes([payload[0], payload[1]]);
    let method = u16::from_be_bytes([payload[2], payload[3]]);
    let args = &payload[4..];
    // What precedes the table: (reserved short?, short strings, a flags octet?).
    let (reserved, strings, bits) = match (class, method) {
        (10, 11) => (false, 0, false), // connection.start-ok: client-properties first
        (40, 10) => (true, 2, true),   // exchange.declare
        (40, 30) | (40, 40) => (true, 3, true), // exchange.bind / unbind
        (50, 10) => (true, 1, true),   // queue.declare
        (50, 20) => (true, 3, true),   // queue.bind
        (50, 50) => (true, 3, false),  // queue.unbind
        (60, 20) => (true, 2, true),   // basic.consume
        _ => return true,
    };
    let mut pos = if reserved { 2 } else { 0 };
    for _ in 0..strings {
        let Some(&len) = args.get(pos) else {
            return true;
        };
        pos += 1 + len as usize;
    }
    if bits {
        pos += 1;
    }
    table_within_limit(args, pos)
}

/// Whether a content header's payload nests within the limit (only `headers` holds a table).
pub fn header_within_limit(payload: &[u8]) -> bool {
    // class(2) weight(2) body size(8), then the properties
    payload.get(12..).is_none_or(properties_within_limit)
}

/// Whether encoded basic properties (flags, then the values) nest within the limit: also
/// checked on properties read back from a topic, which any Pulsar producer can write.
pub fn properties_within_limit(properties: &[u8]) -> bool {
    let payload = properties;
    let Some(flags) = payload.get(0..2) else {
        return true;
    };
    let flags = u16::from_be_bytes([flags[0], flags[1]]);
    let mut pos = 2;
    if flags & 1 != 0 {
        // a continuation flags word: no client sends one for basic
        return true;
    }
    for bit in [15u16, 14] {
        if flags & (1 << bit) != 0 {
            let Some(&len) = payload.get(pos) else {
                return true;
            };
            pos += 1 + len as usize;
        }
    }
    if flags & (1 << 13) == 0 {
        return true;
    }
    table_within_limit(payload, pos)
}

fn read_u32(bytes: &[u8], at: usize) -> Option<usize> {
    let b = bytes.get(at..at + 4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
}

/// Walks the field table at `start` (its 4-byte size first) without recursion.
pub fn table_within_limit(bytes: &[u8], start: usize) -> bool {
    let Some(size) = read_u32(bytes, start) else {
        return true;
    };
    // (end of the container, whether it is a table (entries have names) or an array)
    let mut open: Vec<(usize, bool)> = vec![(start + 4 + size, true)];
    let mut pos = start + 4;
    while let Some(&(end, is_table)) = open.last() {
        if pos >= end {
            open.pop();
            pos = end;
            continue;
        }
        if is_table {
            let Some(&name) = bytes.get(pos) else {
                return true;
            };
            pos += 1 + name as usize;
        }
        let Some(&tag) = bytes.get(pos) else {
            return true;
        };
        pos += 1;
        let skip = match tag {
            b'F' | b'A' => {
                let Some(len) = read_u32(bytes, pos) else {
                    return true;
                };
                if open.len() >= MAX_NESTING {
                    return false;
                }
                open.push((pos + 4 + len, tag == b'F'));
                4
            }
            b'S' | b'x' => match read_u32(bytes, pos) {
                Some(len) => 4 + len,
                None => return true,
            },
            b't' | b'b' | b'B' => 1,
            b's' | b'U' | b'u' => 2,
            b'I' | b'i' | b'f' => 4,
            b'D' => 5,
            b'l' | b'L' | b'd' | b'T' => 8,
            b'V' => 0,
            // Unknown: the parser refuses it right there.
            _ => return true,
        };
        pos += skip;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested_table(depth: usize) -> Vec<u8> {
        // Built from the inside out: each level is the entry "a" = table(previous).
        let mut table: Vec<u8> = Vec::new();
        for _ in 0..depth {
            let mut outer = vec![1, b'a', b'F'];
            outer.extend_from_slice(&(table.len() as u32).to_be_bytes());
            outer.extend_from_slice(&table);
            table = outer;
        }
        let mut sized = (table.len() as u32).to_be_bytes().to_vec();
        sized.extend_from_slice(&table);
        sized
    }

    fn queue_declare(arguments: &[u8]) -> Vec<u8> {
        let mut payload = vec![0, 50, 0, 10, 0, 0, 1, b'q', 0];
        payload.extend_from_slice(arguments);
        payload
    }

    #[test]
    fn shallow_tables_pass_and_deep_ones_do_not() {
        assert!(method_within_limit(&queue_declare(&nested_table(3))));
        assert!(method_within_limit(&queue_declare(&nested_table(
            MAX_NESTING - 1
        ))));
        assert!(!method_within_limit(&queue_declare(&nested_table(
            MAX_NESTING + 1
        ))));
        assert!(!method_within_limit(&queue_declare(&nested_table(20_000))));
    }

    #[test]
    fn headers_of_a_content_header_are_checked() {
        let mut header = vec![0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5];
        // flags: content-type and headers
        header.extend_from_slice(&((1u16 << 15) | (1 << 13)).to_be_bytes());
        header.extend_from_slice(&[4, b't', b'e', b'x', b't']);
        let mut deep = header.clone();
        header.extend_from_slice(&nested_table(2));
        deep.extend_from_slice(&nested_table(1000));
        assert!(header_within_limit(&header));
        assert!(!header_within_limit(&deep));
    }
}
