//! Selectors from Jakarta Messaging 3.1 §3.8.1 and the edges its rules imply, each with the
//! messages it must and must not select, and selectors that must be refused.

use std::collections::HashMap;

use gateway_selector::{Fields, Selector, Value};

struct Message(HashMap<&'static str, Value<'static>>);

impl Fields for Message {
    fn field(&self, name: &str) -> Value<'_> {
        self.0.get(name).cloned().unwrap_or(Value::Null)
    }
}

fn message(fields: &[(&'static str, Value<'static>)]) -> Message {
    Message(fields.iter().cloned().collect())
}

fn s(text: &'static str) -> Value<'static> {
    Value::Str(text.into())
}

const L: fn(i64) -> Value<'static> = Value::Long;
const D: fn(f64) -> Value<'static> = Value::Double;
const B: fn(bool) -> Value<'static> = Value::Bool;

/// `selector` is TRUE for `fields` (`true`), or FALSE or UNKNOWN (`false`).
fn check(selector: &str, fields: &[(&'static str, Value<'static>)], expected: bool) {
    let parsed = Selector::parse(selector)
        .unwrap_or_else(|e| panic!("{selector:?} refused: {e}"))
        .expect("not blank");
    assert_eq!(
        parsed.matches(&message(fields)),
        expected,
        "{selector:?} on {fields:?}"
    );
}

#[test]
fn the_specs_examples() {
    // §3.8.1: "JMSType = 'car' AND color = 'blue' AND weight > 2500"
    let sel = "JMSType = 'car' AND color = 'blue' AND weight > 2500";
    check(
        sel,
        &[
            ("JMSType", s("car")),
            ("color", s("blue")),
            ("weight", L(3000)),
        ],
        true,
    );
    check(
        sel,
        &[
            ("JMSType", s("car")),
            ("color", s("blue")),
            ("weight", L(2500)),
        ],
        false,
    );
    check(sel, &[("JMSType", s("car")), ("color", s("blue"))], false);
    // BETWEEN is inclusive; NOT BETWEEN is its complement for numbers.
    for (age, inside) in [(14, false), (15, true), (17, true), (19, true), (20, false)] {
        check("age BETWEEN 15 AND 19", &[("age", L(age))], inside);
        check("age NOT BETWEEN 15 AND 19", &[("age", L(age))], !inside);
    }
    // IN and NOT IN.
    let uk = [("Country", s("UK"))];
    let peru = [("Country", s("Peru"))];
    check("Country IN ('UK', 'US', 'France')", &uk, true);
    check("Country IN ('UK', 'US', 'France')", &peru, false);
    check("Country NOT IN ('UK', 'US', 'France')", &uk, false);
    check("Country NOT IN ('UK', 'US', 'France')", &peru, true);
    // LIKE and its escape.
    check("phone LIKE '12%3'", &[("phone", s("12993"))], true);
    check("phone LIKE '12%3'", &[("phone", s("1234"))], false);
    check("word LIKE 'l_se'", &[("word", s("lose"))], true);
    check("word LIKE 'l_se'", &[("word", s("loose"))], false);
    check(
        "underscored LIKE '\\_%' ESCAPE '\\'",
        &[("underscored", s("_foo"))],
        true,
    );
    check(
        "underscored LIKE '\\_%' ESCAPE '\\'",
        &[("underscored", s("bar"))],
        false,
    );
    check("phone NOT LIKE '12%3'", &[("phone", s("1234"))], true);
    // IS NULL.
    check("prop_name IS NULL", &[], true);
    check("prop_name IS NULL", &[("prop_name", L(1))], false);
    check("prop_name IS NOT NULL", &[("prop_name", s(""))], true);
    // The header fields a selector may name are plain values to it.
    check(
        "JMSPriority > 4 AND JMSDeliveryMode = 'PERSISTENT'",
        &[("JMSPriority", L(7)), ("JMSDeliveryMode", s("PERSISTENT"))],
        true,
    );
}

#[test]
fn unknown_values_follow_three_valued_logic() {
    // A missing property makes comparisons, arithmetic, IN, LIKE and BETWEEN unknown, and
    // NOT of unknown is unknown: neither form selects.
    for sel in [
        "missing = 1",
        "missing <> 1",
        "NOT (missing = 1)",
        "missing + 1 > 0",
        "missing IN ('a')",
        "missing NOT IN ('a')",
        "missing LIKE '%'",
        "missing NOT LIKE 'a'",
        "missing BETWEEN 1 AND 2",
        "missing NOT BETWEEN 1 AND 2",
        "missing",
        "NOT missing",
    ] {
        check(sel, &[], false);
    }
    // AND: FALSE wins over UNKNOWN; OR: TRUE wins over UNKNOWN.
    check("missing = 1 OR x = 1", &[("x", L(1))], true);
    check("x = 1 OR missing = 1", &[("x", L(1))], true);
    check("NOT (missing = 1 AND x = 2)", &[("x", L(1))], true);
    check("missing = 1 AND x = 1", &[("x", L(1))], false);
    check("NOT (missing = 1 OR x = 2)", &[("x", L(1))], false);
    check("missing IS NULL OR missing = 1", &[], true);
    // An unknown bound: BETWEEN is FALSE when the other bound already decides it.
    check("NOT (x BETWEEN missing AND 5)", &[("x", L(9))], true);
    check("x BETWEEN missing AND 5", &[("x", L(3))], false);
}

#[test]
fn types_never_convert() {
    // A string property is not a number, however it reads: comparing unlike types is FALSE
    // (so `<>` is FALSE too), and NOT of it TRUE.
    check("n = 1", &[("n", s("1"))], false);
    check("n <> 1", &[("n", s("1"))], false);
    check("NOT (n = 1)", &[("n", s("1"))], true);
    check("flag = TRUE", &[("flag", s("true"))], false);
    check("flag = TRUE", &[("flag", B(true))], true);
    check("flag", &[("flag", B(true))], true);
    check("NOT flag", &[("flag", B(false))], true);
    check("flag", &[("flag", L(1))], false);
    // Exact and approximate numbers compare as Java promotes them.
    check("price = 10", &[("price", D(10.0))], true);
    check("price > 9.99", &[("price", L(10))], true);
    // Division is in double, as Artemis and ActiveMQ's selector (used by Starlight for JMS) do.
    check("price / 4 = 2.5", &[("price", L(10))], true);
    check("price / 4 = 2", &[("price", L(10))], false);
    check("price / 4.0 = 2.5", &[("price", L(10))], true);
    check("price / 0 = 1", &[("price", L(10))], false);
    check("NOT (price / 0 = 1)", &[("price", L(10))], false);
    check("-price = -10", &[("price", L(10))], true);
    check("x * 2 + 1 = 7 AND x - 1 = 2", &[("x", L(3))], true);
    check("x = 9223372036854775807 + 1", &[("x", L(i64::MIN))], true);
    check("x = -9223372036854775808", &[("x", L(i64::MIN))], true);
    check(
        "x = 0x10 AND y = 010 AND z = 5L",
        &[("x", L(16)), ("y", L(8)), ("z", L(5))],
        true,
    );
    check(
        "x = 7E3 AND y < -57.9E2 AND z = .5",
        &[("x", L(7000)), ("y", D(-6000.0)), ("z", D(0.5))],
        true,
    );
    // Ordering strings or booleans is FALSE.
    check("s < t", &[("s", s("a")), ("t", s("b"))], false);
    check("a > b", &[("a", B(true)), ("b", B(false))], false);
    // Unlike types in IN and LIKE: no match, and the NOT form matches.
    check("n IN ('1')", &[("n", L(1))], false);
    check("n NOT IN ('1')", &[("n", L(1))], true);
    check("n LIKE '1'", &[("n", L(1))], false);
    check("n NOT LIKE '1'", &[("n", L(1))], true);
    // NOT BETWEEN is `v < low OR v > high`, FALSE for a string.
    check("s NOT BETWEEN 1 AND 2", &[("s", s("x"))], false);
}

#[test]
fn syntax_the_spec_allows() {
    check("  a=1  ", &[("a", L(1))], true);
    check("a = 1 and b = 2 Or c = 3", &[("c", L(3))], true);
    check("a = 1\tAND\nb = 2", &[("a", L(1)), ("b", L(2))], true);
    check("(a = 1 OR b = 2) AND c = 3", &[("b", L(2))], false);
    check("a = 1 OR b = 2 AND c = 3", &[("a", L(1))], true);
    check("NOT a = 1 AND b = 2", &[("a", L(2)), ("b", L(2))], true);
    check("s = 'it''s'", &[("s", s("it's"))], true);
    check("$odd_name_1 = 'x'", &[("$odd_name_1", s("x"))], true);
    check("Name = 'x'", &[("name", s("x"))], false);
    check("TRUE", &[], true);
    check("FALSE OR TRUE", &[], true);
    check("((((a))) = (1))", &[("a", L(1))], true);
    check(
        "a >= 1 AND a <= 1 AND a <> 2 AND a < 2 AND a > 0",
        &[("a", L(1))],
        true,
    );
    check("-(-a) = +a", &[("a", L(4))], true);
    assert!(Selector::parse("").unwrap().is_none());
    assert!(Selector::parse(" \t\n").unwrap().is_none());
}

#[test]
fn selectors_that_are_refused() {
    for (sel, position) in [
        ("a =", 3),
        ("a = 1 AND", 9),
        ("(a = 1", 6),
        ("a = 1)", 5),
        ("a == 1", 3),
        ("a = 'open", 4),
        ("a = 'x' b", 8),
        ("a IN ()", 6),
        ("a IN (1, 2)", 6),
        ("a IN 'x'", 5),
        ("a LIKE b", 7),
        ("a LIKE 'x' ESCAPE 'ab'", 18),
        ("a LIKE 'x!' ESCAPE '!'", 7),
        ("a IS 1", 5),
        ("a BETWEEN 1", 11),
        ("a NOT = 1", 6),
        ("NOT", 3),
        ("5", 0),
        ("'x'", 0),
        ("a + 'x' = 1", 4),
        ("'x' < 'y'", 0),
        ("TRUE > FALSE", 0),
        ("a = 1 AND 5", 10),
        ("NOT 'x'", 4),
        ("'a' BETWEEN 1 AND 2", 0),
        ("1 IN ('1')", 0),
        ("1 LIKE '1'", 0),
        ("a = 'x' AND b = 1 = 2", 18),
        ("9223372036854775808 = a", 0),
        ("a = 1 # 2", 6),
        ("a.b = 1", 1),
    ] {
        let error = Selector::parse(sel).expect_err(sel);
        assert_eq!(error.position, position, "{sel}: {error}");
    }
}
