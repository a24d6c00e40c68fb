//! Properties over random selectors and messages: the canonical text of a selector parses
//! back to one that decides every message the same way, and the laws of three-valued logic
//! hold (double negation, De Morgan, BETWEEN as two comparisons).

use std::collections::HashMap;

use gateway_selector::{ArithOp, CmpOp, Expr, Fields, Selector, Value};
use proptest::prelude::*;

const NAMES: [&str; 3] = ["a", "b", "c"];

#[derive(Debug, Clone)]
struct Message(HashMap<&'static str, Value<'static>>);

impl Fields for Message {
    fn field(&self, name: &str) -> Value<'_> {
        self.0.get(name).cloned().unwrap_or(Value::Null)
    }
}

fn value() -> impl Strategy<Value = Value<'static>> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-5i64..5).prop_map(Value::Long),
        any::<i64>().prop_map(Value::Long),
        (-5.0f64..5.0).prop_map(Value::Double),
        prop_oneof![Just("x"), Just("y"), Just("x_y"), Just("")].prop_map(|s| Value::Str(s.into())),
    ]
}

fn message() -> impl Strategy<Value = Message> {
    prop::collection::vec(value(), NAMES.len())
        .prop_map(|values| Message(NAMES.into_iter().zip(values).collect()))
}

fn ident() -> impl Strategy<Value = Expr> {
    prop::sample::select(&NAMES[..]).prop_map(|n| Expr::Ident(n.to_owned()))
}

fn number() -> impl Strategy<Value = Expr> {
    let leaf = prop_oneof![
        ident(),
        (-5i64..5).prop_map(Expr::Long),
        any::<i64>().prop_map(Expr::Long),
        (-5.0f64..5.0).prop_map(Expr::Double),
    ];
    leaf.prop_recursive(3, 12, 2, |inner| {
        prop_oneof![
            (
                prop::sample::select(vec![ArithOp::Add, ArithOp::Sub, ArithOp::Mul, ArithOp::Div]),
                inner.clone(),
                inner.clone()
            )
                .prop_map(|(op, a, b)| Expr::Arith(op, Box::new(a), Box::new(b))),
            inner.prop_map(|e| Expr::Neg(Box::new(e))),
        ]
    })
}

fn cmp_op() -> impl Strategy<Value = CmpOp> {
    prop::sample::select(vec![
        CmpOp::Eq,
        CmpOp::Ne,
        CmpOp::Lt,
        CmpOp::Le,
        CmpOp::Gt,
        CmpOp::Ge,
    ])
}

fn words() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["x", "y", "x_y", "", "it's"]).prop_map(str::to_owned)
}

fn condition() -> impl Strategy<Value = Expr> {
    let leaf = prop_oneof![
        any::<bool>().prop_map(Expr::Bool),
        ident(),
        (cmp_op(), number(), number()).prop_map(|(op, a, b)| Expr::Compare(
            op,
            Box::new(a),
            Box::new(b)
        )),
        (
            prop::sample::select(vec![CmpOp::Eq, CmpOp::Ne]),
            ident(),
            words()
        )
            .prop_map(|(op, a, s)| Expr::Compare(op, Box::new(a), Box::new(Expr::Str(s)))),
        (number(), number(), number(), any::<bool>()).prop_map(|(v, l, h, negated)| {
            Expr::Between {
                value: Box::new(v),
                low: Box::new(l),
                high: Box::new(h),
                negated,
            }
        }),
        (ident(), prop::collection::vec(words(), 1..3), any::<bool>()).prop_map(
            |(v, list, negated)| Expr::In {
                value: Box::new(v),
                list,
                negated
            }
        ),
        (ident(), any::<bool>()).prop_map(|(v, negated)| Expr::IsNull {
            value: Box::new(v),
            negated
        }),
        (
            ident(),
            prop::sample::select(vec!["x%", "%y", "_", "x!_y", "%"]),
            any::<bool>()
        )
            .prop_map(|(v, p, negated)| {
                let sel = format!(
                    "{v} {}LIKE '{p}' ESCAPE '!'",
                    if negated { "NOT " } else { "" }
                );
                Selector::parse(&sel).unwrap().unwrap().expr().clone()
            }),
    ];
    leaf.prop_recursive(4, 24, 2, |inner| {
        prop_oneof![
            inner.clone().prop_map(|e| Expr::Not(Box::new(e))),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Expr::And(Box::new(a), Box::new(b))),
            (inner.clone(), inner).prop_map(|(a, b)| Expr::Or(Box::new(a), Box::new(b))),
        ]
    })
}

/// A condition's truth: `None` is UNKNOWN.
fn truth(expr: &Expr, m: &Message) -> Option<bool> {
    match expr.evaluate(m) {
        Value::Bool(b) => Some(b),
        _ => None,
    }
}

proptest! {
    #[test]
    fn canonical_text_parses_back_to_the_same_decisions(e in condition(), m in message()) {
        let text = e.to_string();
        let parsed = Selector::parse(&text)
            .map_err(|err| TestCaseError::fail(format!("{text}: {err}")))?
            .expect("not blank");
        prop_assert_eq!(truth(parsed.expr(), &m), truth(&e, &m), "{}", text);
        prop_assert_eq!(parsed.matches(&m), truth(&e, &m) == Some(true));
    }

    #[test]
    fn three_valued_logic_laws(a in condition(), b in condition(), m in message()) {
        let not = |e: &Expr| Expr::Not(Box::new(e.clone()));
        let and = |x: Expr, y: Expr| Expr::And(Box::new(x), Box::new(y));
        let or = |x: Expr, y: Expr| Expr::Or(Box::new(x), Box::new(y));
        prop_assert_eq!(truth(&not(&not(&a)), &m), truth(&a, &m));
        prop_assert_eq!(
            truth(&not(&and(a.clone(), b.clone())), &m),
            truth(&or(not(&a), not(&b)), &m)
        );
        prop_assert_eq!(
            truth(&not(&or(a.clone(), b.clone())), &m),
            truth(&and(not(&a), not(&b)), &m)
        );
        prop_assert_eq!(truth(&and(a.clone(), b.clone()), &m), truth(&and(b.clone(), a.clone()), &m));
        prop_assert_eq!(truth(&or(a.clone(), b.clone()), &m), truth(&or(b, a), &m));
    }

    #[test]
    fn between_is_two_comparisons(v in number(), low in number(), high in number(), m in message()) {
        let between = Expr::Between {
            value: Box::new(v.clone()), low: Box::new(low.clone()), high: Box::new(high.clone()), negated: false,
        };
        let both = Expr::And(
            Box::new(Expr::Compare(CmpOp::Ge, Box::new(v.clone()), Box::new(low.clone()))),
            Box::new(Expr::Compare(CmpOp::Le, Box::new(v.clone()), Box::new(high.clone()))),
        );
        prop_assert_eq!(truth(&between, &m), truth(&both, &m));
        let outside = Expr::Between {
            value: Box::new(v.clone()), low: Box::new(low.clone()), high: Box::new(high.clone()), negated: true,
        };
        let either = Expr::Or(
            Box::new(Expr::Compare(CmpOp::Lt, Box::new(v.clone()), Box::new(low))),
            Box::new(Expr::Compare(CmpOp::Gt, Box::new(v), Box::new(high))),
        );
        prop_assert_eq!(truth(&outside, &m), truth(&either, &m));
    }

    /// Nothing the lexer or parser is given makes them panic.
    #[test]
    fn any_text_parses_or_is_refused(text in "[ a-zA-Z0-9'()=<>!%_+*/.,-]{0,40}") {
        let _ = Selector::parse(&text);
    }
}
