"""Helpers shared by the interop tests: offsets, the Pulsar admin REST API, raw entries."""
import base64
import json
import urllib.error
import urllib.request


def offset_of(ledger, entry, batch_index):
    """Kafka offset of a Pulsar message id (docs/kafka.md, "Offsets (encoding v1)").

    A message outside a batch has batch index -1 in Pulsar's message ids; it is
    the only message of its entry, so it gets batch index 0 in the offset.
    """
    assert 0 <= ledger < 2**31 and 0 <= entry < 2**20 and -1 <= batch_index < 2**12, \
        f"message id out of the v1 offset range: {ledger}:{entry}:{batch_index}"
    return ledger << 32 | entry << 12 | max(batch_index, 0)


def msg_id_offset(mid):
    return offset_of(mid.ledger_id(), mid.entry_id(), mid.batch_index())


def split_offset(offset):
    return offset >> 32, (offset >> 12) & (2**20 - 1), offset & (2**12 - 1)


def key_text(key):
    """How a Kafka key shows as a Pulsar partition key (string): UTF-8 keys as they
    are, other keys base64 (flagged `partition_key_b64_encoded`), no key: absent."""
    if key is None:
        return None
    try:
        return key.decode("utf-8")
    except UnicodeDecodeError:
        return base64.b64encode(key).decode("ascii")


def is_utf8(b):
    try:
        b.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def header_properties(headers):
    """The Pulsar properties (ordered list, duplicates kept) of Kafka headers, per
    docs/kafka.md: UTF-8 values as they are, other values base64, null values
    empty, plus `__kafka_header_encoding` (one letter per header) unless every
    value is plain text."""
    props, letters = [], ""
    for k, v in headers:
        if v is None:
            props.append((k, ""))
            letters += "n"
        elif is_utf8(v):
            props.append((k, v.decode("utf-8")))
            letters += "s"
        else:
            props.append((k, base64.b64encode(v).decode("ascii")))
            letters += "b"
    if any(c != "s" for c in letters):
        props.append(("__kafka_header_encoding", letters))
    return props


# --------------------------------------------------------------------------
# admin REST


def http(method, url, body=None, timeout=30):
    data = None
    headers = {}
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def topic_url(admin_url, topic):
    return f"{admin_url}/admin/v2/persistent/public/default/{topic}"


# --------------------------------------------------------------------------
# raw entries: the Python client hides some metadata (the base64 flag of the
# partition key, binary ordering keys, duplicate property keys), so the tests
# also read entries as the broker stores them, through the admin endpoint
# GET .../{topic}/ledger/{ledger}/entry/{entry}. For a batch entry the broker
# answers with the uncompressed batch payload: per message
# [u32 size][SingleMessageMetadata][payload].


def _varint(buf, pos):
    result = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _fields(buf):
    """(field number, value) pairs of a protobuf message: ints for varints, bytes for
    length-delimited fields."""
    pos, out = 0, []
    while pos < len(buf):
        tag, pos = _varint(buf, pos)
        field, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 2:
            n, pos = _varint(buf, pos)
            value, pos = bytes(buf[pos:pos + n]), pos + n
        elif wire == 1:
            value, pos = int.from_bytes(buf[pos:pos + 8], "little"), pos + 8
        elif wire == 5:
            value, pos = int.from_bytes(buf[pos:pos + 4], "little"), pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        out.append((field, value))
    return out


def parse_single_metadata(buf):
    """SingleMessageMetadata (PulsarApi.proto) as a dict; absent fields are missing."""
    meta = {"properties": []}
    for field, value in _fields(buf):
        if field == 1:
            kv = dict(_fields(value))
            meta["properties"].append((kv.get(1, b"").decode(), kv.get(2, b"").decode()))
        elif field == 2:
            meta["partition_key"] = value.decode()
        elif field == 3:
            meta["payload_size"] = value
        elif field == 4:
            meta["compacted_out"] = bool(value)
        elif field == 5:
            meta["event_time"] = value
        elif field == 6:
            meta["partition_key_b64_encoded"] = bool(value)
        elif field == 7:
            meta["ordering_key"] = value
        elif field == 8:
            meta["sequence_id"] = value
        elif field == 9:
            meta["null_value"] = bool(value)
        elif field == 10:
            meta["null_partition_key"] = bool(value)
    return meta


def read_raw_entry(admin_url, partition_topic, ledger, entry):
    """The messages of one stored batch entry: a list of (SingleMessageMetadata dict,
    payload bytes), in batch-index order. Raises AssertionError with the reason when
    the entry is not a batch entry or cannot be read."""
    status, headers, body = http("GET", f"{topic_url(admin_url, partition_topic)}/ledger/{ledger}/entry/{entry}")
    assert status == 200, f"GET entry {ledger}:{entry} of {partition_topic}: HTTP {status} {body[:200]!r}"
    headers = {k.lower(): v for k, v in headers.items()}
    count = headers.get("x-pulsar-num-batch-message")
    assert count is not None, (
        f"entry {ledger}:{entry} of {partition_topic} is not a batch entry "
        f"(no X-Pulsar-num-batch-message; headers {headers})")
    size = headers.get("x-pulsar-uncompressed-size")
    assert size is None or int(size) == len(body), (
        f"entry {ledger}:{entry}: body of {len(body)} bytes, uncompressed size {size}")
    out, pos = [], 0
    for _ in range(int(count)):
        n = int.from_bytes(body[pos:pos + 4], "big")
        meta = parse_single_metadata(body[pos + 4:pos + 4 + n])
        pos += 4 + n
        payload = body[pos:pos + meta.get("payload_size", 0)]
        pos += len(payload)
        out.append((meta, payload))
    assert pos == len(body), f"entry {ledger}:{entry}: {len(body) - pos} bytes left after {count} messages"
    return out


class Mismatches:
    """Collects every difference so one run reports all of them, not just the first."""

    def __init__(self, limit=40):
        self.items = []
        self.limit = limit

    def check(self, where, what, got, want):
        if got != want:
            self.items.append(f"{where}: {what}: got {got!r}, want {want!r}")

    def add(self, line):
        self.items.append(line)

    def assert_none(self, title):
        if self.items:
            shown = "\n  ".join(self.items[:self.limit])
            more = f"\n  ... and {len(self.items) - self.limit} more" if len(self.items) > self.limit else ""
            raise AssertionError(f"{title}: {len(self.items)} difference(s)\n  {shown}{more}")
