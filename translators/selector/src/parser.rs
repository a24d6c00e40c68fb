//! Recursive descent over the tokens, one function per precedence level (§3.8.1.1: NOT, then
//! AND, then OR; comparisons and the predicates below them; `*` `/` above `+` `-`; unary
//! signs highest). Left to right within a level.
//!
//! Operands whose type is fixed by a literal are checked here, so that what can never be
//! right (`'a' + 1`, `NOT 5`, `TRUE < FALSE`, a selector that is a number) is refused when
//! the consumer attaches, not silently never matched. What an identifier holds is only known
//! per message.

use crate::ast::{ArithOp, CmpOp, Expr};
use crate::lexer::{tokens, Keyword, Token};
use crate::like::Pattern;
use crate::SelectorError;

/// What an expression yields, as far as its literals tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bool,
    Number,
    Str,
    /// Depends on an identifier's value.
    Any,
}

pub fn parse(text: &str) -> Result<Expr, SelectorError> {
    let mut parser = Parser {
        tokens: tokens(text)?,
        at: 0,
        end: text.chars().count(),
    };
    let expr = parser.or()?;
    if let Some((position, token)) = parser.tokens.get(parser.at) {
        return Err(SelectorError {
            position: *position,
            message: format!("unexpected {}", describe(token)),
        });
    }
    parser.expect_kind(&expr, Kind::Bool, 0)?;
    Ok(expr)
}

struct Parser {
    tokens: Vec<(usize, Token)>,
    at: usize,
    /// The selector's length, the position of "the end".
    end: usize,
}

fn describe(token: &Token) -> String {
    match token {
        Token::Ident(name) => format!("name {name}"),
        Token::Keyword(k) => format!("{k:?}").to_uppercase(),
        Token::Str(s) => format!("string {}", crate::ast::quoted(s)),
        Token::Exact(n) => format!("number {n}"),
        Token::Approximate(x) => format!("number {x}"),
        other => format!("{other:?}"),
    }
}

fn kind(expr: &Expr) -> Kind {
    match expr {
        Expr::Bool(_)
        | Expr::Not(_)
        | Expr::And(..)
        | Expr::Or(..)
        | Expr::Compare(..)
        | Expr::Between { .. }
        | Expr::In { .. }
        | Expr::Like { .. }
        | Expr::IsNull { .. } => Kind::Bool,
        Expr::Long(_) | Expr::Double(_) | Expr::Arith(..) | Expr::Neg(_) => Kind::Number,
        Expr::Str(_) => Kind::Str,
        Expr::Ident(_) => Kind::Any,
    }
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at).map(|(_, t)| t)
    }

    fn position(&self) -> usize {
        self.tokens.get(self.at).map_or(self.end, |(p, _)| *p)
    }

    fn error<T>(&self, message: impl Into<String>) -> Result<T, SelectorError> {
        Err(SelectorError {
            position: self.position(),
            message: message.into(),
        })
    }

    fn eat(&mut self, token: &Token) -> bool {
        if self.peek() == Some(token) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn eat_keyword(&mut self, keyword: Keyword) -> bool {
        self.eat(&Token::Keyword(keyword))
    }

    fn expect(&mut self, token: Token, what: &str) -> Result<(), SelectorError> {
        if self.eat(&token) {
            Ok(())
        } else {
            self.found(what)
        }
    }

    /// "expected X, found Y" at the current token.
    fn found<T>(&self, what: &str) -> Result<T, SelectorError> {
        match self.peek() {
            Some(t) => self.error(format!("expected {what}, found {}", describe(t))),
            None => self.error(format!("expected {what}, found the end")),
        }
    }

    /// Refuses `expr` where a `want` is needed and its literals say it is something else.
    fn expect_kind(&self, expr: &Expr, want: Kind, position: usize) -> Result<(), SelectorError> {
        let got = kind(expr);
        if got == want || got == Kind::Any {
            return Ok(());
        }
        let name = |k| match k {
            Kind::Bool => "a condition",
            Kind::Number => "a number",
            Kind::Str => "a string",
            Kind::Any => "a value",
        };
        Err(SelectorError {
            position,
            message: format!("{} is {}, not {}", expr, name(got), name(want)),
        })
    }

    fn or(&mut self) -> Result<Expr, SelectorError> {
        let start = self.position();
        let mut left = self.and()?;
        while self.eat_keyword(Keyword::Or) {
            let at = self.position();
            let right = self.and()?;
            self.expect_kind(&left, Kind::Bool, start)?;
            self.expect_kind(&right, Kind::Bool, at)?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, SelectorError> {
        let start = self.position();
        let mut left = self.not()?;
        while self.eat_keyword(Keyword::And) {
            let at = self.position();
            let right = self.not()?;
            self.expect_kind(&left, Kind::Bool, start)?;
            self.expect_kind(&right, Kind::Bool, at)?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Expr, SelectorError> {
        if self.eat_keyword(Keyword::Not) {
            let at = self.position();
            let operand = self.not()?;
            self.expect_kind(&operand, Kind::Bool, at)?;
            return Ok(Expr::Not(Box::new(operand)));
        }
        self.predicate()
    }

    /// A comparison, BETWEEN, IN, LIKE or IS NULL on an arithmetic expression, or that
    /// expression alone.
    fn predicate(&mut self) -> Result<Expr, SelectorError> {
        let start = self.position();
        let left = self.sum()?;
        let op = match self.peek() {
            Some(Token::Eq) => Some(CmpOp::Eq),
            Some(Token::Ne) => Some(CmpOp::Ne),
            Some(Token::Lt) => Some(CmpOp::Lt),
            Some(Token::Le) => Some(CmpOp::Le),
            Some(Token::Gt) => Some(CmpOp::Gt),
            Some(Token::Ge) => Some(CmpOp::Ge),
            _ => None,
        };
        if let Some(op) = op {
            self.at += 1;
            let at = self.position();
            let right = self.sum()?;
            self.check_comparison(op, &left, &right, start, at)?;
            return Ok(Expr::Compare(op, Box::new(left), Box::new(right)));
        }
        if self.eat_keyword(Keyword::Is) {
            let negated = self.eat_keyword(Keyword::Not);
            if !self.eat_keyword(Keyword::Null) {
                return self.found("NULL");
            }
            return Ok(Expr::IsNull {
                value: Box::new(left),
                negated,
            });
        }
        let negated = self.eat_keyword(Keyword::Not);
        if self.eat_keyword(Keyword::Between) {
            self.expect_kind(&left, Kind::Number, start)?;
            let at = self.position();
            let low = self.sum()?;
            self.expect_kind(&low, Kind::Number, at)?;
            if !self.eat_keyword(Keyword::And) {
                return self.found("AND");
            }
            let at = self.position();
            let high = self.sum()?;
            self.expect_kind(&high, Kind::Number, at)?;
            return Ok(Expr::Between {
                value: Box::new(left),
                low: Box::new(low),
                high: Box::new(high),
                negated,
            });
        }
        if self.eat_keyword(Keyword::In) {
            self.expect_kind(&left, Kind::Str, start)?;
            self.expect(Token::LParen, "(")?;
            let mut list = vec![self.string("a string literal")?];
            while self.eat(&Token::Comma) {
                list.push(self.string("a string literal")?);
            }
            self.expect(Token::RParen, ", or )")?;
            return Ok(Expr::In {
                value: Box::new(left),
                list,
                negated,
            });
        }
        if self.eat_keyword(Keyword::Like) {
            self.expect_kind(&left, Kind::Str, start)?;
            let at = self.position();
            let source = self.string("a string literal (the pattern)")?;
            let escape = if self.eat_keyword(Keyword::Escape) {
                let at = self.position();
                let escape = self.string("a string literal (the escape character)")?;
                let mut chars = escape.chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) => Some(c),
                    _ => {
                        return Err(SelectorError {
                            position: at,
                            message: "the escape must be one character".into(),
                        })
                    }
                }
            } else {
                None
            };
            let pattern = Pattern::new(&source, escape).map_err(|message| SelectorError {
                position: at,
                message,
            })?;
            return Ok(Expr::Like {
                value: Box::new(left),
                pattern,
                negated,
            });
        }
        if negated {
            return self.found("BETWEEN, IN or LIKE after NOT");
        }
        Ok(left)
    }

    /// Comparisons need like types: numbers with numbers, strings with strings, conditions
    /// with conditions; strings and conditions only with `=` and `<>` (§3.8.1.2).
    fn check_comparison(
        &self,
        op: CmpOp,
        left: &Expr,
        right: &Expr,
        start: usize,
        at: usize,
    ) -> Result<(), SelectorError> {
        let (l, r) = (kind(left), kind(right));
        if l != Kind::Any && r != Kind::Any && l != r {
            return Err(SelectorError {
                position: start,
                message: format!("{left} and {right} cannot be compared"),
            });
        }
        if !matches!(op, CmpOp::Eq | CmpOp::Ne) {
            for (expr, kind, position) in [(left, l, start), (right, r, at)] {
                if matches!(kind, Kind::Str | Kind::Bool) {
                    return Err(SelectorError {
                        position,
                        message: format!("{expr} can only be compared with = or <>"),
                    });
                }
            }
        }
        Ok(())
    }

    fn string(&mut self, what: &str) -> Result<String, SelectorError> {
        match self.peek() {
            Some(Token::Str(s)) => {
                let s = s.clone();
                self.at += 1;
                Ok(s)
            }
            _ => self.found(what),
        }
    }

    fn sum(&mut self) -> Result<Expr, SelectorError> {
        let start = self.position();
        let mut left = self.product()?;
        loop {
            let op = match self.peek() {
                Some(Token::Plus) => ArithOp::Add,
                Some(Token::Minus) => ArithOp::Sub,
                _ => return Ok(left),
            };
            self.at += 1;
            let at = self.position();
            let right = self.product()?;
            self.expect_kind(&left, Kind::Number, start)?;
            self.expect_kind(&right, Kind::Number, at)?;
            left = Expr::Arith(op, Box::new(left), Box::new(right));
        }
    }

    fn product(&mut self) -> Result<Expr, SelectorError> {
        let start = self.position();
        let mut left = self.unary()?;
        loop {
            let op = match self.peek() {
                Some(Token::Star) => ArithOp::Mul,
                Some(Token::Slash) => ArithOp::Div,
                _ => return Ok(left),
            };
            self.at += 1;
            let at = self.position();
            let right = self.unary()?;
            self.expect_kind(&left, Kind::Number, start)?;
            self.expect_kind(&right, Kind::Number, at)?;
            left = Expr::Arith(op, Box::new(left), Box::new(right));
        }
    }

    /// Signs; a minus before a literal makes a negative literal, which is how
    /// `-9223372036854775808` (Java's `Long.MIN_VALUE`) is written.
    fn unary(&mut self) -> Result<Expr, SelectorError> {
        let minus = match self.peek() {
            Some(Token::Minus) => true,
            Some(Token::Plus) => false,
            _ => return self.primary(),
        };
        self.at += 1;
        let at = self.position();
        if minus {
            match self.peek() {
                Some(&Token::Exact(n)) if n <= 1 << 63 => {
                    self.at += 1;
                    return Ok(Expr::Long((n as i128).wrapping_neg() as i64));
                }
                Some(&Token::Approximate(x)) => {
                    self.at += 1;
                    return Ok(Expr::Double(-x));
                }
                _ => {}
            }
        }
        let operand = self.unary()?;
        self.expect_kind(&operand, Kind::Number, at)?;
        Ok(if minus {
            Expr::Neg(Box::new(operand))
        } else {
            operand
        })
    }

    fn primary(&mut self) -> Result<Expr, SelectorError> {
        let Some(token) = self.peek().cloned() else {
            return self.found("a value");
        };
        let expr = match token {
            Token::Ident(name) => Expr::Ident(name),
            Token::Str(s) => Expr::Str(s),
            Token::Exact(n) => match i64::try_from(n) {
                Ok(n) => Expr::Long(n),
                Err(_) => return self.error(format!("{n} is out of range (only after a minus)")),
            },
            Token::Approximate(x) => Expr::Double(x),
            Token::Keyword(Keyword::True) => Expr::Bool(true),
            Token::Keyword(Keyword::False) => Expr::Bool(false),
            Token::LParen => {
                self.at += 1;
                let inner = self.or()?;
                self.expect(Token::RParen, ")")?;
                return Ok(inner);
            }
            _ => return self.found("a value"),
        };
        self.at += 1;
        Ok(expr)
    }
}
