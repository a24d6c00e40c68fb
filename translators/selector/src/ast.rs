//! The parsed form of a selector, and its canonical text (fully parenthesised), which parses
//! back to the same tree.

use std::fmt;

use crate::like::Pattern;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Bool(bool),
    /// An exact numeric literal (Java `long`).
    Long(i64),
    /// An approximate numeric literal (Java `double`).
    Double(f64),
    Str(String),
    /// A property or header field.
    Ident(String),
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Compare(CmpOp, Box<Expr>, Box<Expr>),
    Arith(ArithOp, Box<Expr>, Box<Expr>),
    Neg(Box<Expr>),
    Between {
        value: Box<Expr>,
        low: Box<Expr>,
        high: Box<Expr>,
        negated: bool,
    },
    In {
        value: Box<Expr>,
        list: Vec<String>,
        negated: bool,
    },
    Like {
        value: Box<Expr>,
        pattern: Pattern,
        negated: bool,
    },
    IsNull {
        value: Box<Expr>,
        negated: bool,
    },
}

impl CmpOp {
    pub fn symbol(self) -> &'static str {
        match self {
            CmpOp::Eq => "=",
            CmpOp::Ne => "<>",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }
}

impl ArithOp {
    pub fn symbol(self) -> &'static str {
        match self {
            ArithOp::Add => "+",
            ArithOp::Sub => "-",
            ArithOp::Mul => "*",
            ArithOp::Div => "/",
        }
    }
}

/// A string literal as a selector writes it.
pub(crate) fn quoted(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let not = |negated: bool| if negated { "NOT " } else { "" };
        match self {
            Expr::Bool(b) => write!(f, "{}", if *b { "TRUE" } else { "FALSE" }),
            // i64::MIN has no literal of its own: `-9223372036854775808` is minus a literal
            // that only exists after a minus, and is parsed as one.
            Expr::Long(n) => write!(f, "{n}"),
            Expr::Double(x) => write!(f, "{x:?}"),
            Expr::Str(s) => f.write_str(&quoted(s)),
            Expr::Ident(name) => f.write_str(name),
            Expr::Not(e) => write!(f, "(NOT {e})"),
            Expr::And(a, b) => write!(f, "({a} AND {b})"),
            Expr::Or(a, b) => write!(f, "({a} OR {b})"),
            Expr::Compare(op, a, b) => write!(f, "({a} {} {b})", op.symbol()),
            Expr::Arith(op, a, b) => write!(f, "({a} {} {b})", op.symbol()),
            Expr::Neg(e) => write!(f, "(-{e})"),
            Expr::Between {
                value,
                low,
                high,
                negated,
            } => write!(f, "({value} {}BETWEEN {low} AND {high})", not(*negated)),
            Expr::In {
                value,
                list,
                negated,
            } => {
                let items: Vec<String> = list.iter().map(|s| quoted(s)).collect();
                write!(f, "({value} {}IN ({}))", not(*negated), items.join(", "))
            }
            Expr::Like {
                value,
                pattern,
                negated,
            } => write!(f, "({value} {}LIKE {pattern})", not(*negated)),
            Expr::IsNull { value, negated } => {
                write!(f, "({value} IS {}NULL)", not(*negated))
            }
        }
    }
}
