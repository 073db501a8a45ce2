//! `--filter`: the part of OData's `$filter` that Table storage supports, evaluated over a
//! snapshot's entities (never sent to the service: the snapshot is what is filtered).
//!
//! Understood: comparisons `eq ne gt ge lt le` between a property (`PartitionKey`, `RowKey`,
//! `Timestamp` or any other) and a literal, joined by `and`, `or`, `not` and parentheses.
//! Literals: `'text'` (a quote doubled inside), `42` (Int32), `42L` (Int64), `4.2`/`4e2`
//! (Double), `true`/`false`, `datetime'2024-01-31T12:00:00Z'`, `guid'…'`, `X'0aff'` or
//! `binary'0aff'`. Numbers compare by value across Int32, Int64 and Double; DateTimes as
//! instants; Guids ignoring case; strings by code point. A comparison with a property the
//! entity lacks, or of a value of another type, is false (so `not` of it is true), as the
//! service has it.

use std::cmp::Ordering;

use anyhow::{anyhow, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, NaiveDateTime, Utc};

use super::entity::{Entity, Property};

/// A parsed filter.
#[derive(Debug)]
pub struct Filter {
    root: Node,
}

#[derive(Debug)]
enum Node {
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Not(Box<Node>),
    Compare(Operand, Op, Operand),
}

#[derive(Debug)]
enum Operand {
    Property(String),
    Literal(Value),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

/// A value compared: a literal's, or an entity's property's.
#[derive(Clone, Debug)]
enum Value {
    Text(String),
    Integer(i64),
    Double(f64),
    Boolean(bool),
    Instant(DateTime<Utc>),
    Guid(String),
    Bytes(Vec<u8>),
}

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Word(String),
    Text(String),
    /// A typed literal: `datetime'…'`, `guid'…'`, `X'…'`.
    Typed(String, String),
    Number(String),
    Open,
    Close,
}

impl Filter {
    /// Parses `text`; an error says where and what was expected, in one line.
    pub fn parse(text: &str) -> anyhow::Result<Filter> {
        let tokens = tokenize(text).map_err(|e| anyhow!("--filter {text:?}: {e}"))?;
        let mut parser = Parser { tokens, at: 0 };
        let root = parser
            .or()
            .and_then(|root| match parser.peek() {
                None => Ok(root),
                Some(token) => Err(anyhow!("unexpected {}", describe(token))),
            })
            .map_err(|e| anyhow!("--filter {text:?}: {e}"))?;
        Ok(Filter { root })
    }

    /// Whether `entity` matches.
    pub fn matches(&self, entity: &Entity) -> bool {
        evaluate(&self.root, entity)
    }
}

fn evaluate(node: &Node, entity: &Entity) -> bool {
    match node {
        Node::And(a, b) => evaluate(a, entity) && evaluate(b, entity),
        Node::Or(a, b) => evaluate(a, entity) || evaluate(b, entity),
        Node::Not(a) => !evaluate(a, entity),
        Node::Compare(left, op, right) => {
            match (operand_value(left, entity), operand_value(right, entity)) {
                (Some(left), Some(right)) => compare(&left, *op, &right),
                _ => false,
            }
        }
    }
}

/// An operand's value for `entity`; `None` for a property it lacks.
fn operand_value(operand: &Operand, entity: &Entity) -> Option<Value> {
    match operand {
        Operand::Literal(value) => Some(value.clone()),
        Operand::Property(name) => match name.as_str() {
            "PartitionKey" => Some(Value::Text(entity.partition_key.clone())),
            "RowKey" => Some(Value::Text(entity.row_key.clone())),
            "Timestamp" => entity
                .timestamp
                .as_deref()
                .and_then(instant)
                .map(Value::Instant),
            _ => entity.properties.get(name).and_then(property_value),
        },
    }
}

fn property_value(property: &Property) -> Option<Value> {
    Some(match property {
        Property::String(s) => Value::Text(s.clone()),
        Property::Int32(n) => Value::Integer(i64::from(*n)),
        Property::Int64(n) => Value::Integer(*n),
        Property::Double(d) => Value::Double(*d),
        Property::Boolean(b) => Value::Boolean(*b),
        Property::DateTime(s) => Value::Instant(instant(s)?),
        Property::Guid(s) => Value::Guid(s.to_ascii_lowercase()),
        Property::Binary(s) => Value::Bytes(STANDARD.decode(s).ok()?),
    })
}

/// A DateTime as the service writes it (RFC 3339; without an offset taken as UTC).
fn instant(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
                .ok()
                .map(|t| t.and_utc())
        })
}

fn compare(left: &Value, op: Op, right: &Value) -> bool {
    let ordering = match (left, right) {
        (Value::Text(a), Value::Text(b)) => Some(a.cmp(b)),
        (Value::Integer(a), Value::Integer(b)) => Some(a.cmp(b)),
        (Value::Integer(a), Value::Double(b)) => (*a as f64).partial_cmp(b),
        (Value::Double(a), Value::Integer(b)) => a.partial_cmp(&(*b as f64)),
        (Value::Double(a), Value::Double(b)) => a.partial_cmp(b),
        (Value::Boolean(a), Value::Boolean(b)) => Some(a.cmp(b)),
        (Value::Instant(a), Value::Instant(b)) => Some(a.cmp(b)),
        (Value::Guid(a), Value::Guid(b)) => Some(a.cmp(b)),
        (Value::Bytes(a), Value::Bytes(b)) => Some(a.cmp(b)),
        // Values of different types never compare.
        _ => return false,
    };
    let Some(ordering) = ordering else {
        // NaN: unequal to everything.
        return op == Op::Ne;
    };
    match op {
        Op::Eq => ordering == Ordering::Equal,
        Op::Ne => ordering != Ordering::Equal,
        Op::Gt => ordering == Ordering::Greater,
        Op::Ge => ordering != Ordering::Less,
        Op::Lt => ordering == Ordering::Less,
        Op::Le => ordering != Ordering::Greater,
    }
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.at).cloned();
        self.at += 1;
        token
    }

    fn keyword(&mut self, word: &str) -> bool {
        if self.peek() == Some(&Token::Word(word.to_owned())) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn or(&mut self) -> anyhow::Result<Node> {
        let mut node = self.and()?;
        while self.keyword("or") {
            node = Node::Or(Box::new(node), Box::new(self.and()?));
        }
        Ok(node)
    }

    fn and(&mut self) -> anyhow::Result<Node> {
        let mut node = self.unary()?;
        while self.keyword("and") {
            node = Node::And(Box::new(node), Box::new(self.unary()?));
        }
        Ok(node)
    }

    fn unary(&mut self) -> anyhow::Result<Node> {
        if self.keyword("not") {
            return Ok(Node::Not(Box::new(self.unary()?)));
        }
        if self.peek() == Some(&Token::Open) {
            self.at += 1;
            let node = self.or()?;
            return match self.next() {
                Some(Token::Close) => Ok(node),
                Some(other) => bail!("expected ')', found {}", describe(&other)),
                None => bail!("a '(' is never closed"),
            };
        }
        let left = self.operand()?;
        let op = match self.next() {
            Some(Token::Word(word)) => match word.as_str() {
                "eq" => Op::Eq,
                "ne" => Op::Ne,
                "gt" => Op::Gt,
                "ge" => Op::Ge,
                "lt" => Op::Lt,
                "le" => Op::Le,
                _ => bail!("expected eq, ne, gt, ge, lt or le, found {word:?}"),
            },
            Some(other) => bail!(
                "expected eq, ne, gt, ge, lt or le, found {}",
                describe(&other)
            ),
            None => bail!("the filter ends before its comparison does"),
        };
        let right = self.operand()?;
        Ok(Node::Compare(left, op, right))
    }

    fn operand(&mut self) -> anyhow::Result<Operand> {
        Ok(match self.next() {
            Some(Token::Word(word)) if word == "true" || word == "false" => {
                Operand::Literal(Value::Boolean(word == "true"))
            }
            Some(Token::Word(word))
                if matches!(
                    word.as_str(),
                    "and" | "or" | "not" | "eq" | "ne" | "gt" | "ge" | "lt" | "le"
                ) =>
            {
                bail!("expected a property or a value, found {word:?}")
            }
            Some(Token::Word(word)) => Operand::Property(word),
            Some(Token::Text(text)) => Operand::Literal(Value::Text(text)),
            Some(Token::Number(number)) => Operand::Literal(number_value(&number)?),
            Some(Token::Typed(kind, text)) => Operand::Literal(typed_value(&kind, &text)?),
            Some(other) => bail!("expected a property or a value, found {}", describe(&other)),
            None => bail!("the filter ends where a property or a value was expected"),
        })
    }
}

fn number_value(text: &str) -> anyhow::Result<Value> {
    let bad = || anyhow!("{text} is not a number");
    if let Some(digits) = text.strip_suffix(['L', 'l']) {
        return Ok(Value::Integer(digits.parse().map_err(|_| bad())?));
    }
    let double = text.strip_suffix(['D', 'd']);
    if double.is_none() && !text.contains(['.', 'e', 'E']) {
        let n: i64 = text.parse().map_err(|_| bad())?;
        if i32::try_from(n).is_err() {
            bail!("{text} is beyond an Int32: write {text}L for an Int64");
        }
        return Ok(Value::Integer(n));
    }
    Ok(Value::Double(
        double.unwrap_or(text).parse().map_err(|_| bad())?,
    ))
}

fn typed_value(kind: &str, text: &str) -> anyhow::Result<Value> {
    match kind {
        "datetime" => instant(text).map(Value::Instant).ok_or_else(|| {
            anyhow!("datetime'{text}' is not a date and time: write datetime'2024-01-31T12:00:00Z'")
        }),
        "guid" if text.len() == 36 && text.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') => {
            Ok(Value::Guid(text.to_ascii_lowercase()))
        }
        "guid" => {
            bail!("guid'{text}' is not a GUID: write guid'c9da6455-213d-42c9-9a79-3e9149a57833'")
        }
        "X" | "binary" => {
            let bytes: Option<Vec<u8>> = text
                .len()
                .is_multiple_of(2)
                .then(|| {
                    (0..text.len())
                        .step_by(2)
                        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
                        .collect()
                })
                .flatten();
            bytes
                .map(Value::Bytes)
                .ok_or_else(|| anyhow!("{kind}'{text}' is not hex digits in pairs"))
        }
        other => {
            bail!("{other}'…' is not a literal Tidemark knows: use datetime'…', guid'…' or X'…'")
        }
    }
}

fn describe(token: &Token) -> String {
    match token {
        Token::Word(word) => format!("{word:?}"),
        Token::Text(text) => format!("'{text}'"),
        Token::Typed(kind, text) => format!("{kind}'{text}'"),
        Token::Number(number) => number.clone(),
        Token::Open => "'('".into(),
        Token::Close => "')'".into(),
    }
}

fn tokenize(text: &str) -> anyhow::Result<Vec<Token>> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '(' || c == ')' {
            tokens.push(if c == '(' { Token::Open } else { Token::Close });
            i += 1;
        } else if c == '\'' {
            let (literal, end) = quoted(&chars, i)?;
            tokens.push(Token::Text(literal));
            i = end;
        } else if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            if chars.get(i) == Some(&'\'') {
                let (literal, end) = quoted(&chars, i)?;
                tokens.push(Token::Typed(word, literal));
                i = end;
            } else {
                tokens.push(Token::Word(word));
            }
        } else if c.is_ascii_digit()
            || (c == '-' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            let start = i;
            i += 1;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric()
                    || chars[i] == '.'
                    || ((chars[i] == '-' || chars[i] == '+') && matches!(chars[i - 1], 'e' | 'E')))
            {
                i += 1;
            }
            tokens.push(Token::Number(chars[start..i].iter().collect()));
        } else {
            bail!("{c:?} at position {} is not part of a filter", i + 1);
        }
    }
    Ok(tokens)
}

/// The quoted literal starting at `chars[start]` (a quote), with `''` for a quote inside;
/// and where it ends.
fn quoted(chars: &[char], start: usize) -> anyhow::Result<(String, usize)> {
    let mut literal = String::new();
    let mut i = start + 1;
    loop {
        match chars.get(i) {
            None => bail!("the quote at position {} is never closed", start + 1),
            Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                literal.push('\'');
                i += 2;
            }
            Some('\'') => return Ok((literal, i + 1)),
            Some(c) => {
                literal.push(*c);
                i += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn entity() -> Entity {
        Entity {
            partition_key: "tenant-7".into(),
            row_key: "it's".into(),
            timestamp: Some("2024-03-01T10:00:00.1234567Z".into()),
            properties: BTreeMap::from([
                ("Age".into(), Property::Int32(42)),
                ("Big".into(), Property::Int64(1 << 40)),
                ("Score".into(), Property::Double(2.5)),
                ("Gone".into(), Property::Double(f64::NAN)),
                ("Active".into(), Property::Boolean(true)),
                (
                    "Since".into(),
                    Property::DateTime("2020-05-06T07:08:09Z".into()),
                ),
                (
                    "Id".into(),
                    Property::Guid("C9DA6455-213D-42C9-9A79-3E9149A57833".into()),
                ),
                ("Raw".into(), Property::Binary("AAr/".into())),
                ("Name".into(), Property::String("Zoë".into())),
            ]),
        }
    }

    fn matches(filter: &str) -> bool {
        Filter::parse(filter).unwrap().matches(&entity())
    }

    #[test]
    fn comparisons_of_every_type() {
        for yes in [
            "PartitionKey eq 'tenant-7'",
            "RowKey eq 'it''s'",
            "PartitionKey ge 'tenant-' and PartitionKey lt 'tenant-8'",
            "Age eq 42",
            "Age gt 41.5",
            "42 eq Age",
            "Big eq 1099511627776L",
            "Big gt 42",
            "Score le 2.5",
            "Score lt 3e0",
            "Active eq true",
            "Since lt datetime'2020-05-06T07:08:10Z'",
            "Since eq datetime'2020-05-06T07:08:09'",
            "Timestamp gt datetime'2024-03-01T10:00:00.1234566Z'",
            "Id eq guid'c9da6455-213d-42c9-9a79-3e9149a57833'",
            "Raw eq X'000aff'",
            "Raw eq binary'000AFF'",
            "Name gt 'Zo'",
            "Gone ne 1.0",
            "not (Missing eq 1)",
            "not Age eq 1",
            "Age eq 1 or (Age eq 42 and Active eq true)",
        ] {
            assert!(matches(yes), "{yes}");
        }
        for no in [
            "PartitionKey eq 'tenant-8'",
            "Age eq 43",
            "Age eq '42'",
            "Missing eq 1",
            "Missing ne 1",
            "Gone eq 1.0",
            "Gone gt 0.0",
            "Active eq false",
            "Age eq 1 or Age eq 2",
            "(Age eq 42 or Age eq 2) and Active eq false",
            "not (Age eq 42)",
        ] {
            assert!(!matches(no), "{no}");
        }
    }

    #[test]
    fn and_binds_tighter_than_or() {
        // Read as Age eq 1 or (Age eq 42 and Active eq false): false.
        assert!(!matches("Age eq 1 or Age eq 42 and Active eq false"));
        // Read as (Age eq 42) or (...): true.
        assert!(matches("Age eq 42 or Age eq 1 and Active eq false"));
    }

    #[test]
    fn mistakes_are_refused_in_one_line() {
        for (filter, said) in [
            (
                "Age eq",
                "the filter ends where a property or a value was expected",
            ),
            (
                "Age equals 4",
                "expected eq, ne, gt, ge, lt or le, found \"equals\"",
            ),
            ("(Age eq 4", "a '(' is never closed"),
            ("Name eq 'open", "the quote at position 9 is never closed"),
            ("Age eq 4 Age", "unexpected \"Age\""),
            (
                "Age eq 3000000000",
                "3000000000 is beyond an Int32: write 3000000000L for an Int64",
            ),
            (
                "When eq datetime'yesterday'",
                "datetime'yesterday' is not a date and time",
            ),
            (
                "Age eq 4 & Age eq 5",
                "'&' at position 10 is not part of a filter",
            ),
        ] {
            let error = Filter::parse(filter).unwrap_err().to_string();
            assert!(
                error.starts_with(&format!("--filter {filter:?}: {said}")),
                "{error}"
            );
            assert_eq!(error.lines().count(), 1);
        }
    }
}
