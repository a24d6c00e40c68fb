//! `LIKE` patterns: `_` stands for any one character, `%` for any sequence (the empty one
//! too), and the `ESCAPE` character makes the character after it literal.

use std::fmt;

use crate::ast::quoted;

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Char(char),
    One,
    Any,
}

/// A compiled pattern, with its source for display.
#[derive(Debug, Clone, PartialEq)]
pub struct Pattern {
    source: String,
    escape: Option<char>,
    parts: Vec<Part>,
}

impl Pattern {
    /// Compiles `source`; an escape character at the end, with nothing to escape, is an
    /// error. The spec only says what escaping `_` and `%` means; any other character after
    /// the escape character is taken literally too, as SQL engines do.
    pub fn new(source: &str, escape: Option<char>) -> Result<Pattern, String> {
        let mut parts = Vec::new();
        let mut chars = source.chars();
        while let Some(c) = chars.next() {
            parts.push(match c {
                c if Some(c) == escape => match chars.next() {
                    Some(next) => Part::Char(next),
                    None => return Err("the pattern ends with its escape character".into()),
                },
                '_' => Part::One,
                '%' => Part::Any,
                c => Part::Char(c),
            });
        }
        Ok(Pattern {
            source: source.to_owned(),
            escape,
            parts,
        })
    }

    /// Whether `text` matches the whole pattern. Backtracks to the last `%` only, so the cost
    /// is at most the product of the lengths (no exponential blow-up on `%a%a%a…`).
    pub fn matches(&self, text: &str) -> bool {
        let text: Vec<char> = text.chars().collect();
        let (mut p, mut t) = (0, 0);
        let mut last_any: Option<(usize, usize)> = None;
        while t < text.len() {
            match self.parts.get(p) {
                Some(Part::Any) => {
                    last_any = Some((p, t));
                    p += 1;
                }
                Some(Part::One) => {
                    p += 1;
                    t += 1;
                }
                Some(Part::Char(c)) if *c == text[t] => {
                    p += 1;
                    t += 1;
                }
                _ => match last_any {
                    // Let the last `%` take one more character, and try again after it.
                    Some((any, from)) => {
                        last_any = Some((any, from + 1));
                        p = any + 1;
                        t = from + 1;
                    }
                    None => return false,
                },
            }
        }
        self.parts[p..].iter().all(|part| *part == Part::Any)
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&quoted(&self.source))?;
        if let Some(e) = self.escape {
            write!(f, " ESCAPE {}", quoted(&e.to_string()))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn like(pattern: &str, escape: Option<char>, text: &str) -> bool {
        Pattern::new(pattern, escape).unwrap().matches(text)
    }

    /// The spec's examples (§3.8.1.2), and the edges around them.
    #[test]
    fn wildcards_and_escapes() {
        assert!(like("12%3", None, "123"));
        assert!(like("12%3", None, "12993"));
        assert!(!like("12%3", None, "1234"));
        assert!(like("l_se", None, "lose"));
        assert!(!like("l_se", None, "loose"));
        assert!(like("\\_%", Some('\\'), "_foo"));
        assert!(!like("\\_%", Some('\\'), "bar"));
        assert!(like("%", None, ""));
        assert!(!like("_", None, ""));
        assert!(like("a%%b", None, "ab"));
        assert!(like("%a%b%", None, "xxaxxbxx"));
        assert!(!like("%a%b%", None, "xxbxxaxx"));
        assert!(like("100!%", Some('!'), "100%"));
        assert!(!like("100!%", Some('!'), "1000"));
        assert!(like("a!!b", Some('!'), "a!b"));
        assert!(like("ü_", None, "üß"));
        assert!(!like("abc", None, "ABC"), "case matters");
        assert!(Pattern::new("abc!", Some('!')).is_err());
    }

    #[test]
    fn many_wildcards_stay_cheap() {
        let pattern = "%a".repeat(50) + "%b";
        let text = "a".repeat(5000);
        assert!(!like(&pattern, None, &text));
    }
}
