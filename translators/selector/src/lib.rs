//! JMS message selectors: the SQL-92 conditional subset of Jakarta Messaging 3.1 §3.8.1.1,
//! parsed once when a consumer attaches (a bad one refused then, as
//! `InvalidSelectorException`) and evaluated by the gateway for each message, with SQL's
//! three-valued logic: a message matches only when its selector is TRUE, not when it is FALSE or
//! UNKNOWN (a property it names is missing).
//!
//! The front end decides what a name means: message properties by their names, and the header
//! fields a selector may name (`JMSDeliveryMode`, `JMSPriority`, `JMSMessageID`,
//! `JMSTimestamp`, `JMSCorrelationID`, `JMSType`) from the message's own fields, through
//! [`Fields`]. No crate implements this grammar with the spec's typing rules, hence this one.

mod ast;
mod eval;
mod lexer;
mod like;
mod parser;

pub use ast::{ArithOp, CmpOp, Expr};
pub use eval::{Fields, Value};

/// Why a selector is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid selector at character {position}: {message}")]
pub struct SelectorError {
    /// Where in the selector (in characters, from 0) the problem was found.
    pub position: usize,
    pub message: String,
}

/// A parsed selector.
#[derive(Debug, Clone, PartialEq)]
pub struct Selector {
    source: String,
    expr: Expr,
}

impl Selector {
    /// Parses `text`. An empty or blank selector is no selector (`None`): every message
    /// matches, as the spec says of null and empty ones.
    pub fn parse(text: &str) -> Result<Option<Selector>, SelectorError> {
        if text.chars().all(lexer::is_space) {
            return Ok(None);
        }
        let expr = parser::parse(text)?;
        Ok(Some(Selector {
            source: text.to_owned(),
            expr,
        }))
    }

    /// Whether a message with these fields is selected: the selector is TRUE for it.
    pub fn matches(&self, fields: &impl Fields) -> bool {
        eval::evaluate(&self.expr, fields) == Value::Bool(true)
    }

    /// The selector as given.
    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn expr(&self) -> &Expr {
        &self.expr
    }
}
