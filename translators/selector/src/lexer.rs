//! Tokens of a selector (§3.8.1.1): string literals in single quotes ('' for a quote),
//! numeric literals in Java's syntax, identifiers in Java's, keywords in any case.

use crate::SelectorError;

#[derive(Debug, Clone, PartialEq)]
pub enum Token {
    /// A Java identifier that is no keyword (case matters).
    Ident(String),
    Keyword(Keyword),
    Str(String),
    /// An exact literal's magnitude; `2^63` is only valid right after a minus.
    Exact(u64),
    Approximate(f64),
    LParen,
    RParen,
    Comma,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Plus,
    Minus,
    Star,
    Slash,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keyword {
    Not,
    And,
    Or,
    Between,
    Like,
    In,
    Is,
    Null,
    True,
    False,
    Escape,
}

impl Keyword {
    fn from_word(word: &str) -> Option<Keyword> {
        Some(match word.to_ascii_uppercase().as_str() {
            "NOT" => Keyword::Not,
            "AND" => Keyword::And,
            "OR" => Keyword::Or,
            "BETWEEN" => Keyword::Between,
            "LIKE" => Keyword::Like,
            "IN" => Keyword::In,
            "IS" => Keyword::Is,
            "NULL" => Keyword::Null,
            "TRUE" => Keyword::True,
            "FALSE" => Keyword::False,
            "ESCAPE" => Keyword::Escape,
            _ => return None,
        })
    }
}

/// The spec's white space: space, horizontal tab, form feed and line terminators.
pub fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\x0c' | '\n' | '\r')
}

fn ident_start(c: char) -> bool {
    c.is_alphabetic() || c == '_' || c == '$'
}

fn ident_part(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '$'
}

fn error(position: usize, message: impl Into<String>) -> SelectorError {
    SelectorError {
        position,
        message: message.into(),
    }
}

/// The tokens of `text`, each with its position in characters.
pub fn tokens(text: &str) -> Result<Vec<(usize, Token)>, SelectorError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        if is_space(c) {
            i += 1;
            continue;
        }
        let token = match c {
            '(' => Token::LParen,
            ')' => Token::RParen,
            ',' => Token::Comma,
            '=' => Token::Eq,
            '+' => Token::Plus,
            '-' => Token::Minus,
            '*' => Token::Star,
            '/' => Token::Slash,
            '<' => match chars.get(i + 1) {
                Some('>') => {
                    i += 1;
                    Token::Ne
                }
                Some('=') => {
                    i += 1;
                    Token::Le
                }
                _ => Token::Lt,
            },
            '>' => match chars.get(i + 1) {
                Some('=') => {
                    i += 1;
                    Token::Ge
                }
                _ => Token::Gt,
            },
            '\'' => {
                let mut s = String::new();
                loop {
                    i += 1;
                    match chars.get(i) {
                        None => return Err(error(start, "unterminated string literal")),
                        Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                            s.push('\'');
                            i += 1;
                        }
                        Some('\'') => break,
                        Some(&c) => s.push(c),
                    }
                }
                Token::Str(s)
            }
            c if c.is_ascii_digit()
                || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) =>
            {
                let (token, end) = number(&chars, i)?;
                i = end - 1;
                token
            }
            c if ident_start(c) => {
                let mut end = i + 1;
                while end < chars.len() && ident_part(chars[end]) {
                    end += 1;
                }
                let word: String = chars[i..end].iter().collect();
                i = end - 1;
                match Keyword::from_word(&word) {
                    Some(k) => Token::Keyword(k),
                    None => Token::Ident(word),
                }
            }
            c => return Err(error(start, format!("unexpected character {c:?}"))),
        };
        out.push((start, token));
        i += 1;
    }
    Ok(out)
}

/// A numeric literal starting at `start`, in Java's syntax: decimal, `0x` hexadecimal or
/// leading-zero octal integers with an optional `L`; decimals with a fraction and/or an
/// exponent and an optional `F`/`D`. Returns the token and the index after it.
fn number(chars: &[char], start: usize) -> Result<(Token, usize), SelectorError> {
    let mut end = start;
    let take = |end: &mut usize, ok: &dyn Fn(char) -> bool| {
        while *end < chars.len() && ok(chars[*end]) {
            *end += 1;
        }
    };
    let followed_by_name = |end: usize| chars.get(end).is_some_and(|&c| ident_part(c));
    if chars[start] == '0' && matches!(chars.get(start + 1), Some('x' | 'X')) {
        end += 2;
        take(&mut end, &|c| c.is_ascii_hexdigit());
        let digits: String = chars[start + 2..end].iter().collect();
        if matches!(chars.get(end), Some('l' | 'L')) {
            end += 1;
        }
        if digits.is_empty() || followed_by_name(end) {
            return Err(error(start, "malformed hexadecimal literal"));
        }
        let value = u64::from_str_radix(&digits, 16)
            .map_err(|_| error(start, "hexadecimal literal out of range"))?;
        return Ok((Token::Exact(value), end));
    }
    take(&mut end, &|c| c.is_ascii_digit());
    let mut approximate = false;
    if chars.get(end) == Some(&'.') {
        approximate = true;
        end += 1;
        take(&mut end, &|c| c.is_ascii_digit());
    }
    if matches!(chars.get(end), Some('e' | 'E')) {
        let mut exp = end + 1;
        if matches!(chars.get(exp), Some('+' | '-')) {
            exp += 1;
        }
        if chars.get(exp).is_some_and(char::is_ascii_digit) {
            approximate = true;
            end = exp;
            take(&mut end, &|c| c.is_ascii_digit());
        } else {
            return Err(error(start, "malformed exponent"));
        }
    }
    let text: String = chars[start..end].iter().collect();
    let suffix = chars.get(end).copied();
    if matches!(suffix, Some('f' | 'F' | 'd' | 'D')) {
        end += 1;
        approximate = true;
    } else if !approximate && matches!(suffix, Some('l' | 'L')) {
        end += 1;
    }
    if followed_by_name(end) {
        return Err(error(start, format!("malformed number {text:?}")));
    }
    if approximate {
        let value: f64 = text
            .parse()
            .map_err(|_| error(start, format!("malformed number {text:?}")))?;
        return Ok((Token::Approximate(value), end));
    }
    let value = if text.len() > 1 && text.starts_with('0') {
        u64::from_str_radix(&text[1..], 8)
            .map_err(|_| error(start, format!("malformed octal literal {text:?}")))?
    } else {
        text.parse()
            .map_err(|_| error(start, format!("number {text} out of range")))?
    };
    Ok((Token::Exact(value), end))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<Token> {
        tokens(text).unwrap().into_iter().map(|(_, t)| t).collect()
    }

    #[test]
    fn literals_in_java_syntax() {
        assert_eq!(kinds("57"), [Token::Exact(57)]);
        assert_eq!(
            kinds("0x1F 017 5L 0"),
            [
                Token::Exact(31),
                Token::Exact(15),
                Token::Exact(5),
                Token::Exact(0)
            ]
        );
        assert_eq!(
            kinds("7E3 57.9E2 7. .5 6.2 1f 2D"),
            [
                Token::Approximate(7000.0),
                Token::Approximate(5790.0),
                Token::Approximate(7.0),
                Token::Approximate(0.5),
                Token::Approximate(6.2),
                Token::Approximate(1.0),
                Token::Approximate(2.0)
            ]
        );
        assert_eq!(kinds("'it''s'"), [Token::Str("it's".into())]);
        assert_eq!(kinds("''"), [Token::Str(String::new())]);
        assert_eq!(kinds("9223372036854775808"), [Token::Exact(1 << 63)]);
    }

    #[test]
    fn keywords_in_any_case_names_as_written() {
        assert_eq!(
            kinds("and Or nOt"),
            [
                Token::Keyword(Keyword::And),
                Token::Keyword(Keyword::Or),
                Token::Keyword(Keyword::Not)
            ]
        );
        assert_eq!(
            kinds("JMSType $x _y\tç"),
            [
                Token::Ident("JMSType".into()),
                Token::Ident("$x".into()),
                Token::Ident("_y".into()),
                Token::Ident("ç".into())
            ]
        );
        assert_eq!(
            kinds("a<>b<=c>=d<e>f"),
            [
                Token::Ident("a".into()),
                Token::Ne,
                Token::Ident("b".into()),
                Token::Le,
                Token::Ident("c".into()),
                Token::Ge,
                Token::Ident("d".into()),
                Token::Lt,
                Token::Ident("e".into()),
                Token::Gt,
                Token::Ident("f".into())
            ]
        );
    }

    #[test]
    fn malformed_tokens_are_refused_with_their_position() {
        for (text, position) in [
            ("a = 'open", 4),
            ("a = 12abc", 4),
            ("a = 1e", 4),
            ("a = 0x", 4),
            ("a = 099", 4),
            ("a # 1", 2),
            ("a = 99999999999999999999", 4),
        ] {
            let e = tokens(text).unwrap_err();
            assert_eq!(e.position, position, "{text}: {e}");
        }
    }
}
