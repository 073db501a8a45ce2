//! The `redis[s]://[user[:password]@]host[:port][/db]` URL, read by hand (a password in it is
//! percent-decoded into memory wiped when dropped, and never shown in an error).

use anyhow::bail;
use zeroize::Zeroizing;

use crate::percent::PercentError;

/// The port Redis listens on unless the URL says otherwise.
const DEFAULT_PORT: u16 = 6379;

/// The parts of a `redis://` URL.
pub(super) struct ParsedUrl {
    pub(super) tls: bool,
    pub(super) host: String,
    pub(super) port: u16,
    pub(super) user: Option<String>,
    pub(super) password: Option<Zeroizing<String>>,
    pub(super) db: Option<String>,
}

impl ParsedUrl {
    pub(super) fn parse(url: &str) -> anyhow::Result<ParsedUrl> {
        let shown = redact(url);
        let (tls, rest) = if let Some(rest) = url.strip_prefix("redis://") {
            (false, rest)
        } else if let Some(rest) = url.strip_prefix("rediss://") {
            (true, rest)
        } else {
            bail!(
                "Redis URL {shown} does not start with redis:// (or rediss:// for TLS): write redis://HOST:PORT/"
            );
        };
        if rest.contains(['?', '#']) {
            bail!(
                "Redis URL {shown} has a query or fragment, which Tidemark does not read: remove it (set password_file or tls_ca_file in the configuration instead)"
            );
        }
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((userinfo, hostport)) => (Some(userinfo), hostport),
            None => (None, authority),
        };
        let (host, port) = split_host_port(hostport, &shown)?;
        if host.is_empty() {
            bail!("Redis URL {shown} has no host: write redis://HOST:PORT/");
        }
        let (user, password) = match userinfo {
            None => (None, None),
            Some(userinfo) => {
                let (user, password) = match userinfo.split_once(':') {
                    Some((user, password)) => (user, Some(password)),
                    None => (userinfo, None),
                };
                let user = percent_decode(user, &shown)?;
                let password = match password {
                    Some(p) if !p.is_empty() => Some(Zeroizing::new(percent_decode(p, &shown)?)),
                    _ => None,
                };
                ((!user.is_empty()).then_some(user), password)
            }
        };
        let db = path.trim_end_matches('/');
        let db = (!db.is_empty() && db != "0").then(|| db.to_owned());
        Ok(ParsedUrl {
            tls,
            host,
            port,
            user,
            password,
            db,
        })
    }

    pub(super) fn display(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        format!("{scheme}://{}:{}/", self.host, self.port)
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
fn split_host_port(hostport: &str, shown: &str) -> anyhow::Result<(String, u16)> {
    let (host, port) = if let Some(rest) = hostport.strip_prefix('[') {
        let Some((host, after)) = rest.split_once(']') else {
            bail!("Redis URL {shown} has an unclosed [ in its host: write redis://[ADDRESS]:PORT/");
        };
        (host, after.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (hostport, None),
        }
    };
    let port = match port {
        None | Some("") => DEFAULT_PORT,
        Some(port) => match port.parse::<u16>() {
            Ok(port) if port != 0 => port,
            _ => bail!("Redis URL {shown} has port {port:?}, not a number from 1 to 65535"),
        },
    };
    Ok((host.to_owned(), port))
}

/// The URL with any password replaced by `***`, for messages.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rsplit_once('@') {
        Some((userinfo, _)) if userinfo.contains(':') => {
            let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
            let at = rest[..authority_end].rfind('@').expect("found above");
            format!("{scheme}://{user}:***{}", &rest[at..])
        }
        _ => url.to_owned(),
    }
}

fn percent_decode(text: &str, shown: &str) -> anyhow::Result<String> {
    crate::percent::percent_decode(text).map_err(|e| match e {
        PercentError::BadEscape => anyhow::anyhow!(
            "Redis URL {shown} has a % not followed by two hex digits in its user part: write %25 for a %"
        ),
        PercentError::NotUtf8 => {
            anyhow::anyhow!("Redis URL {shown} has a user part that is not UTF-8 once decoded")
        }
    })
}

pub(super) fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
