//! Evaluation with SQL's three-valued logic (§3.8.1.2): `Value::Null` is UNKNOWN, which a
//! missing property, and any arithmetic or comparison with one, yields.
//!
//! - Numbers compare and compute as Java promotes them: two exact values as `long` (overflow
//!   wraps), anything with an approximate value as `double`. Division is always in `double`, as
//!   ActiveMQ Artemis and Starlight for JMS (ActiveMQ's selector) divide: `5 / 2 = 2.5`. Division
//!   of exact values by zero is UNKNOWN (Java would throw).
//! - Values of unlike types are never equal, nor unequal: comparing them is FALSE, as the spec
//!   says, and so is ordering strings or booleans.
//! - `NOT BETWEEN`, `NOT IN` are what the spec defines them as (`v < low OR v > high`,
//!   `NOT (v = a OR v = b …)`), which differs from NOT applied to the positive form only for
//!   values of unlike types.

use std::borrow::Cow;
use std::cmp::Ordering;

use crate::ast::{ArithOp, CmpOp, Expr};

/// A value a selector works with. Java's `byte`, `short`, `int` and `long` properties are
/// `Long`; `float` and `double` are `Double`.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    Null,
    Bool(bool),
    Long(i64),
    Double(f64),
    Str(Cow<'a, str>),
}

/// The message's side of an evaluation: the value of a property or header field by the name a
/// selector gives (case matters), `Value::Null` when the message has none.
pub trait Fields {
    fn field(&self, name: &str) -> Value<'_>;
}

impl Expr {
    /// This expression's value for a message. A selector matches when it is `Bool(true)`.
    pub fn evaluate<'a>(&'a self, fields: &'a impl Fields) -> Value<'a> {
        evaluate(self, fields)
    }
}

pub fn evaluate<'a>(expr: &'a Expr, fields: &'a impl Fields) -> Value<'a> {
    match expr {
        Expr::Bool(b) => Value::Bool(*b),
        Expr::Long(n) => Value::Long(*n),
        Expr::Double(x) => Value::Double(*x),
        Expr::Str(s) => Value::Str(Cow::Borrowed(s)),
        Expr::Ident(name) => fields.field(name),
        Expr::Not(e) => not(evaluate(e, fields)),
        Expr::And(a, b) => {
            let a = truth(evaluate(a, fields));
            if a == Some(false) {
                return Value::Bool(false);
            }
            match (a, truth(evaluate(b, fields))) {
                (_, Some(false)) => Value::Bool(false),
                (Some(true), Some(true)) => Value::Bool(true),
                _ => Value::Null,
            }
        }
        Expr::Or(a, b) => {
            let a = truth(evaluate(a, fields));
            if a == Some(true) {
                return Value::Bool(true);
            }
            match (a, truth(evaluate(b, fields))) {
                (_, Some(true)) => Value::Bool(true),
                (Some(false), Some(false)) => Value::Bool(false),
                _ => Value::Null,
            }
        }
        Expr::Compare(op, a, b) => compare(*op, &evaluate(a, fields), &evaluate(b, fields)),
        Expr::Arith(op, a, b) => arith(*op, evaluate(a, fields), evaluate(b, fields)),
        Expr::Neg(e) => match evaluate(e, fields) {
            Value::Long(n) => Value::Long(n.wrapping_neg()),
            Value::Double(x) => Value::Double(-x),
            _ => Value::Null,
        },
        Expr::Between {
            value,
            low,
            high,
            negated,
        } => {
            let v = evaluate(value, fields);
            let (low, high) = (evaluate(low, fields), evaluate(high, fields));
            if *negated {
                or(compare(CmpOp::Lt, &v, &low), compare(CmpOp::Gt, &v, &high))
            } else {
                and(compare(CmpOp::Ge, &v, &low), compare(CmpOp::Le, &v, &high))
            }
        }
        Expr::In {
            value,
            list,
            negated,
        } => {
            let found = match evaluate(value, fields) {
                Value::Null => return Value::Null,
                Value::Str(s) => list.iter().any(|item| *item == *s),
                _ => false,
            };
            Value::Bool(found != *negated)
        }
        Expr::Like {
            value,
            pattern,
            negated,
        } => match evaluate(value, fields) {
            Value::Null => Value::Null,
            Value::Str(s) => Value::Bool(pattern.matches(&s) != *negated),
            _ => Value::Bool(*negated),
        },
        Expr::IsNull { value, negated } => {
            Value::Bool((evaluate(value, fields) == Value::Null) != *negated)
        }
    }
}

/// A condition's truth: `None` is UNKNOWN (a null, or a value that is no condition).
fn truth(v: Value<'_>) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(b),
        _ => None,
    }
}

fn not(v: Value<'_>) -> Value<'static> {
    match truth(v) {
        Some(b) => Value::Bool(!b),
        None => Value::Null,
    }
}

fn and(a: Value<'_>, b: Value<'_>) -> Value<'static> {
    match (truth(a), truth(b)) {
        (Some(false), _) | (_, Some(false)) => Value::Bool(false),
        (Some(true), Some(true)) => Value::Bool(true),
        _ => Value::Null,
    }
}

fn or(a: Value<'_>, b: Value<'_>) -> Value<'static> {
    match (truth(a), truth(b)) {
        (Some(true), _) | (_, Some(true)) => Value::Bool(true),
        (Some(false), Some(false)) => Value::Bool(false),
        _ => Value::Null,
    }
}

fn compare(op: CmpOp, a: &Value<'_>, b: &Value<'_>) -> Value<'static> {
    let ordering = match (a, b) {
        (Value::Null, _) | (_, Value::Null) => return Value::Null,
        (Value::Long(x), Value::Long(y)) => Some(x.cmp(y)),
        (Value::Long(x), Value::Double(y)) => (*x as f64).partial_cmp(y),
        (Value::Double(x), Value::Long(y)) => x.partial_cmp(&(*y as f64)),
        (Value::Double(x), Value::Double(y)) => x.partial_cmp(y),
        (Value::Str(x), Value::Str(y)) => return equality(op, x == y),
        (Value::Bool(x), Value::Bool(y)) => return equality(op, x == y),
        _ => return Value::Bool(false),
    };
    // NaN is unordered: every comparison with it is false, as in Java.
    let Some(ordering) = ordering else {
        return Value::Bool(false);
    };
    Value::Bool(match op {
        CmpOp::Eq => ordering == Ordering::Equal,
        CmpOp::Ne => ordering != Ordering::Equal,
        CmpOp::Lt => ordering == Ordering::Less,
        CmpOp::Le => ordering != Ordering::Greater,
        CmpOp::Gt => ordering == Ordering::Greater,
        CmpOp::Ge => ordering != Ordering::Less,
    })
}

/// `=` and `<>` between strings or booleans; ordering them is false.
fn equality(op: CmpOp, equal: bool) -> Value<'static> {
    Value::Bool(match op {
        CmpOp::Eq => equal,
        CmpOp::Ne => !equal,
        _ => false,
    })
}

fn arith(op: ArithOp, a: Value<'_>, b: Value<'_>) -> Value<'static> {
    match (a, b) {
        (Value::Long(x), Value::Long(y)) => match op {
            ArithOp::Add => Value::Long(x.wrapping_add(y)),
            ArithOp::Sub => Value::Long(x.wrapping_sub(y)),
            ArithOp::Mul => Value::Long(x.wrapping_mul(y)),
            ArithOp::Div if y == 0 => Value::Null,
            ArithOp::Div => Value::Double(x as f64 / y as f64),
        },
        (x, y) => match (double(&x), double(&y)) {
            (Some(x), Some(y)) => Value::Double(match op {
                ArithOp::Add => x + y,
                ArithOp::Sub => x - y,
                ArithOp::Mul => x * y,
                ArithOp::Div => x / y,
            }),
            _ => Value::Null,
        },
    }
}

fn double(v: &Value<'_>) -> Option<f64> {
    match v {
        Value::Long(n) => Some(*n as f64),
        Value::Double(x) => Some(*x),
        _ => None,
    }
}
