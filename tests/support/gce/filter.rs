//! The `filter` of `instances.list`, the part of Compute's filter language that clients use:
//! terms `FIELD OP VALUE` joined by `AND` or spaces, each optionally in parentheses. FIELD is a
//! dotted path into the resource (`name`, `status`, `labels.KEY`); OP is `=`, `!=`, `:` (with
//! `*`: the field is set) or the regular-expression forms `eq` and `ne` (RE2, whole value);
//! VALUE is bare, "double-quoted" or 'single-quoted'. `OR` is refused with a clear message
//! rather than misread.

use regex::Regex;
use serde_json::Value;

/// A parsed filter: every term must hold.
#[derive(Debug)]
pub struct Filter {
    terms: Vec<Term>,
}

#[derive(Debug)]
struct Term {
    path: Vec<String>,
    test: Test,
}

#[derive(Debug)]
enum Test {
    Equals(String),
    NotEquals(String),
    Present,
    Matches(Regex),
    NotMatches(Regex),
}

impl Filter {
    /// Parses a filter expression; the error says what is wrong or unsupported.
    pub fn parse(text: &str) -> Result<Filter, String> {
        let mut tokens = tokenize(text)?.into_iter().peekable();
        let mut terms = Vec::new();
        while let Some(token) = tokens.next() {
            match token.as_str() {
                "(" | ")" | "AND" => continue,
                "OR" => return Err("fake-gce supports filters of AND-ed terms only, not OR".into()),
                _ => {}
            }
            let field = token;
            if !field.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) {
                return Err(format!("{field:?} is not a field name"));
            }
            let operator = tokens
                .next()
                .ok_or_else(|| format!("the term on {field} has no operator"))?;
            let value = tokens
                .next()
                .filter(|v| v != ")" && v != "(")
                .ok_or_else(|| format!("the term on {field} has no value"))?;
            let value = unquote(&value);
            let anchored = |pattern: &str| {
                Regex::new(&format!("^(?:{pattern})$"))
                    .map_err(|e| format!("{pattern:?} is not a regular expression: {e}"))
            };
            let test = match operator.as_str() {
                "=" => Test::Equals(value),
                "!=" => Test::NotEquals(value),
                ":" if value == "*" => Test::Present,
                ":" => Test::Equals(value),
                "eq" => Test::Matches(anchored(&value)?),
                "ne" => Test::NotMatches(anchored(&value)?),
                other => return Err(format!("the operator {other:?} is not supported by fake-gce")),
            };
            terms.push(Term {
                path: field.split('.').map(str::to_string).collect(),
                test,
            });
        }
        Ok(Filter { terms })
    }

    /// Whether `resource` satisfies every term.
    pub fn matches(&self, resource: &Value) -> bool {
        self.terms.iter().all(|term| {
            let value = term
                .path
                .iter()
                .try_fold(resource, |node, key| node.get(key))
                .and_then(|v| match v {
                    Value::String(s) => Some(s.clone()),
                    Value::Number(_) | Value::Bool(_) => Some(v.to_string()),
                    _ => None,
                });
            match (&term.test, value) {
                (Test::Present, value) => value.is_some(),
                (Test::Equals(expected), Some(value)) => value == *expected,
                (Test::NotEquals(expected), value) => value.as_ref() != Some(expected),
                (Test::Matches(regex), Some(value)) => regex.is_match(&value),
                (Test::NotMatches(regex), value) => !value.is_some_and(|v| regex.is_match(&v)),
                (Test::Equals(_) | Test::Matches(_), None) => false,
            }
        })
    }
}

/// Splits into words, quoted strings (kept with their quotes), parentheses and operators.
fn tokenize(text: &str) -> Result<Vec<String>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '(' || c == ')' || c == ':' || c == '=' {
            tokens.push(c.to_string());
            i += 1;
        } else if c == '!' && chars.get(i + 1) == Some(&'=') {
            tokens.push("!=".into());
            i += 2;
        } else if c == '"' || c == '\'' {
            let mut token = String::from(c);
            i += 1;
            loop {
                let Some(&next) = chars.get(i) else {
                    return Err(format!("an unterminated quoted value in {text:?}"));
                };
                i += 1;
                if next == '\\' {
                    if let Some(&escaped) = chars.get(i) {
                        token.push(escaped);
                        i += 1;
                    }
                    continue;
                }
                token.push(next);
                if next == c {
                    break;
                }
            }
            tokens.push(token);
        } else {
            let start = i;
            while i < chars.len() && !chars[i].is_whitespace() && !"()=!:\"'".contains(chars[i]) {
                i += 1;
            }
            tokens.push(chars[start..i].iter().collect());
        }
    }
    Ok(tokens)
}

fn unquote(token: &str) -> String {
    for quote in ['"', '\''] {
        if let Some(inner) = token.strip_prefix(quote).and_then(|t| t.strip_suffix(quote)) {
            return inner.to_string();
        }
    }
    token.to_string()
}
