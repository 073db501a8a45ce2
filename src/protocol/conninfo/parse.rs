//! libpq's two connection-string forms turned into `(keyword, value)` pairs: `key=value`
//! (single quotes, `\` escapes, spaces around `=`) and the `postgres[ql]://` URI
//! (percent-decoding, `[v6]` hosts, `?key=value&…`). Errors name keywords and positions, never a
//! value, since a value may be a password.

use std::fmt;

use crate::percent::PercentError;

/// Why a connection string could not be read; it never holds a value from the string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError(String);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ParseError {}

fn error(text: impl Into<String>) -> ParseError {
    ParseError(text.into())
}

/// The keywords and values of `conninfo` in the order given (a later repeat wins, as in libpq).
pub fn parse(conninfo: &str) -> Result<Vec<(String, String)>, ParseError> {
    for scheme in ["postgresql://", "postgres://"] {
        if let Some(rest) = conninfo.strip_prefix(scheme) {
            return parse_uri(rest);
        }
    }
    parse_key_values(conninfo)
}

/// `key = value key2='quoted \' value'`.
fn parse_key_values(text: &str) -> Result<Vec<(String, String)>, ParseError> {
    let mut pairs = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(pairs);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(error(format!(
                "missing \"=\" after \"{}\"",
                key.escape_default()
            )));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    None => {
                        return Err(error(format!("unterminated quoted value for \"{key}\"")));
                    }
                    Some('\'') => break,
                    Some('\\') => value.extend(chars.next()),
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.extend(chars.next());
                } else {
                    value.push(c);
                }
            }
        }
        pairs.push((key, value));
    }
}

/// What follows `postgresql://`: `[user[:password]@][host][:port][/dbname][?key=value&…]`.
fn parse_uri(rest: &str) -> Result<Vec<(String, String)>, ParseError> {
    let (before_query, query) = match rest.split_once('?') {
        Some((before, query)) => (before, Some(query)),
        None => (rest, None),
    };
    let (authority, dbname) = match before_query.split_once('/') {
        Some((authority, dbname)) => (authority, Some(dbname)),
        None => (before_query, None),
    };
    let mut pairs = Vec::new();
    let host_port = match authority.rsplit_once('@') {
        Some((user_info, host_port)) => {
            let (user, password) = match user_info.split_once(':') {
                Some((user, password)) => (user, Some(password)),
                None => (user_info, None),
            };
            if !user.is_empty() {
                pairs.push(("user".to_owned(), percent_decode(user, "user")?));
            }
            if let Some(password) = password {
                pairs.push(("password".to_owned(), percent_decode(password, "password")?));
            }
            host_port
        }
        None => authority,
    };
    if host_port.contains(',') {
        // Several hosts: kept as libpq lists them so the caller refuses them by name.
        pairs.push(("host".to_owned(), host_port.to_owned()));
    } else {
        let (host, port) = split_host_port(host_port)?;
        if !host.is_empty() {
            pairs.push(("host".to_owned(), percent_decode(host, "host")?));
        }
        if let Some(port) = port {
            pairs.push(("port".to_owned(), percent_decode(port, "port")?));
        }
    }
    if let Some(dbname) = dbname.filter(|d| !d.is_empty()) {
        pairs.push(("dbname".to_owned(), percent_decode(dbname, "dbname")?));
    }
    for parameter in query.into_iter().flat_map(|q| q.split('&')) {
        if parameter.is_empty() {
            continue;
        }
        let (key, value) = parameter.split_once('=').ok_or_else(|| {
            error(format!(
                "URI query parameter \"{}\" has no \"=\"",
                parameter.escape_default()
            ))
        })?;
        let key = percent_decode(key, "a query parameter name")?;
        let value = percent_decode(value, &key)?;
        pairs.push((key, value));
    }
    Ok(pairs)
}

/// `host:port`, `[::1]:port`, `host` or `:port`.
fn split_host_port(text: &str) -> Result<(&str, Option<&str>), ParseError> {
    if let Some(inside) = text.strip_prefix('[') {
        let (host, after) = inside
            .split_once(']')
            .ok_or_else(|| error("an IPv6 host in the URI lacks its closing \"]\""))?;
        return match after {
            "" => Ok((host, None)),
            _ => match after.strip_prefix(':') {
                Some(port) => Ok((host, Some(port))),
                None => Err(error("unexpected text after \"]\" in the URI's host")),
            },
        };
    }
    Ok(match text.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (text, None),
    })
}

/// Undoes `%XX` escapes; `what` names the part for the error.
fn percent_decode(text: &str, what: &str) -> Result<String, ParseError> {
    crate::percent::percent_decode(text).map_err(|e| match e {
        PercentError::BadEscape => error(format!("invalid percent-encoding in the URI's {what}")),
        PercentError::NotUtf8 => error(format!("the URI's {what} is not UTF-8")),
    })
}

#[cfg(test)]
mod tests {
    use super::parse;

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn key_values_with_quotes_escapes_and_spaces() {
        assert_eq!(
            parse("host = db port=5433  password='it\\'s a \\\\ secret' sslmode=verify-full user=a\\ b")
                .unwrap(),
            pairs(&[
                ("host", "db"),
                ("port", "5433"),
                ("password", "it's a \\ secret"),
                ("sslmode", "verify-full"),
                ("user", "a b"),
            ])
        );
        assert_eq!(parse("  ").unwrap(), pairs(&[]));
        assert_eq!(parse("dbname=''").unwrap(), pairs(&[("dbname", "")]));
    }

    #[test]
    fn malformed_key_values_are_refused_without_values() {
        let e = parse("host=x password=hunter2 bogus")
            .unwrap_err()
            .to_string();
        assert_eq!(e, "missing \"=\" after \"bogus\"");
        let e = parse("password='hunter2").unwrap_err().to_string();
        assert_eq!(e, "unterminated quoted value for \"password\"");
    }

    #[test]
    fn uris_with_every_part() {
        assert_eq!(
            parse("postgresql://rep:p%40ss@db.example:6543/postgres?sslmode=verify-ca&sslrootcert=%2Fetc%2Fca.crt")
                .unwrap(),
            pairs(&[
                ("user", "rep"),
                ("password", "p@ss"),
                ("host", "db.example"),
                ("port", "6543"),
                ("dbname", "postgres"),
                ("sslmode", "verify-ca"),
                ("sslrootcert", "/etc/ca.crt"),
            ])
        );
        assert_eq!(
            parse("postgres://[::1]:5432").unwrap(),
            pairs(&[("host", "::1"), ("port", "5432")])
        );
        assert_eq!(
            parse("postgresql://backup@%2Fvar%2Frun%2Fpostgresql:5432").unwrap(),
            pairs(&[
                ("user", "backup"),
                ("host", "/var/run/postgresql"),
                ("port", "5432")
            ])
        );
        assert_eq!(parse("postgresql://").unwrap(), pairs(&[]));
        assert_eq!(
            parse("postgresql://a,b:5/x").unwrap(),
            pairs(&[("host", "a,b:5"), ("dbname", "x")])
        );
    }

    #[test]
    fn malformed_uris_are_refused_without_values() {
        let e = parse("postgresql://u:hunter2%zz@h")
            .unwrap_err()
            .to_string();
        assert_eq!(e, "invalid percent-encoding in the URI's password");
        let e = parse("postgresql://[::1").unwrap_err().to_string();
        assert!(e.contains("closing"), "{e}");
        let e = parse("postgresql://h?sslmode").unwrap_err().to_string();
        assert!(e.contains("has no \"=\""), "{e}");
    }
}
