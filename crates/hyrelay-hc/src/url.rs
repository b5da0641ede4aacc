//! URL grammar of Hybrid Connections.
//!
//! WebSocket actions live under `/$hc/{path}[/suffix]?…&sb-hc-action=listen|connect|accept|request`;
//! plain HTTP requests go to `/{path}[/suffix][?query]`. All `sb-hc-*=value` pairs are reserved
//! for the relay and are removed from what the listener sees; every other part of the query
//! (order, empty pairs, `+`, percent escapes) is passed on byte for byte.

use percent_encoding::percent_decode_str;
use thiserror::Error;

/// Longest accepted request target (path + query), in bytes.
pub const MAX_TARGET_LEN: usize = 8192;

/// The action requested on a `/$hc/` WebSocket URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A listener opens its control channel.
    Listen,
    /// A sender asks for a relayed WebSocket.
    Connect,
    /// A listener joins (or rejects) a pending sender at an `accept` address.
    Accept,
    /// A listener opens an HTTP rendezvous socket for a request id.
    Request,
}

impl Action {
    /// Parses the value of `sb-hc-action` (case-insensitive).
    pub fn parse(s: &str) -> Option<Action> {
        match s.to_ascii_lowercase().as_str() {
            "listen" => Some(Action::Listen),
            "connect" => Some(Action::Connect),
            "accept" => Some(Action::Accept),
            "request" => Some(Action::Request),
            _ => None,
        }
    }

    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Listen => "listen",
            Action::Connect => "connect",
            Action::Accept => "accept",
            Action::Request => "request",
        }
    }
}

/// Errors in a request target.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum UrlError {
    /// The target is longer than [`MAX_TARGET_LEN`].
    #[error("request target is {0} bytes, longer than the limit of {MAX_TARGET_LEN}")]
    TooLong(usize),
    /// The target is not in origin form (`/path?query`).
    #[error("request target must start with '/'")]
    NotOriginForm,
    /// A `/$hc/` URL without `sb-hc-action`.
    #[error("missing sb-hc-action query parameter")]
    MissingAction,
    /// `sb-hc-action` with an unknown value.
    #[error("unknown sb-hc-action '{0}' (expected listen, connect, accept or request)")]
    UnknownAction(String),
    /// A `/$hc/` URL without an entity path.
    #[error("the URL names no hybrid connection")]
    MissingPath,
    /// The path is not valid percent-encoded UTF-8.
    #[error("the path is not valid UTF-8 after percent-decoding")]
    BadEncoding,
}

/// A parsed request target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `Some` for `/$hc/` URLs.
    pub action: Option<Action>,
    /// Decoded path below `/$hc/` (or below `/` for plain HTTP), without leading or trailing
    /// slash handling beyond removing the single leading `/`.
    pub path: String,
    /// The raw (still percent-encoded) path, starting with `/`, as sent (without `$hc/`).
    pub raw_path: String,
    /// The application query: the original query with every `sb-hc-*=…` pair removed.
    /// Empty when nothing is left. Without the leading `?`.
    pub app_query: String,
    /// `sb-hc-id`.
    pub id: Option<String>,
    /// `sb-hc-token` (percent-decoded once).
    pub token: Option<String>,
    /// `sb-hc-nonce` (our single-use accept capability).
    pub nonce: Option<String>,
    /// Reject status from `sb-hc-statusCode` or `statusCode`.
    pub status_code: Option<String>,
    /// Reject description from `sb-hc-statusDescription` or `statusDescription`.
    pub status_description: Option<String>,
}

fn decode_component(s: &str) -> String {
    // application/x-www-form-urlencoded: '+' means space in query values.
    let replaced = s.replace('+', " ");
    percent_decode_str(&replaced)
        .decode_utf8_lossy()
        .into_owned()
}

fn decode_token(s: &str) -> String {
    // Tokens contain base64 where '+' is data; only percent escapes are decoded.
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// Parses an origin-form request target.
pub fn parse_target(target: &str) -> Result<Target, UrlError> {
    if target.len() > MAX_TARGET_LEN {
        return Err(UrlError::TooLong(target.len()));
    }
    if !target.starts_with('/') {
        return Err(UrlError::NotOriginForm);
    }
    let (raw_path, query) = match target.find('?') {
        Some(i) => (&target[..i], &target[i + 1..]),
        None => (target, ""),
    };
    let (is_hc, rest) = match raw_path.strip_prefix("/$hc/") {
        Some(r) => (true, r),
        None if raw_path == "/$hc" => (true, ""),
        None => (false, &raw_path[1..]),
    };
    let path = percent_decode_str(rest)
        .decode_utf8()
        .map_err(|_| UrlError::BadEncoding)?
        .into_owned();

    let mut t = Target {
        action: None,
        path,
        raw_path: format!("/{rest}"),
        app_query: String::new(),
        id: None,
        token: None,
        nonce: None,
        status_code: None,
        status_description: None,
    };
    let mut kept: Vec<&str> = Vec::new();
    let mut action_raw: Option<String> = None;
    let mut any = false;
    for pair in query.split('&') {
        any = true;
        let (k, v) = match pair.find('=') {
            Some(i) => (&pair[..i], Some(&pair[i + 1..])),
            None => (pair, None),
        };
        let lk = k.to_ascii_lowercase();
        match (lk.as_str(), v) {
            ("sb-hc-action", Some(v)) => action_raw = Some(decode_component(v)),
            ("sb-hc-id", Some(v)) => t.id = Some(decode_component(v)),
            ("sb-hc-token", Some(v)) => t.token = Some(decode_token(v)),
            ("sb-hc-nonce", Some(v)) => t.nonce = Some(decode_component(v)),
            ("sb-hc-statuscode", Some(v)) => t.status_code = Some(decode_component(v)),
            ("sb-hc-statusdescription", Some(v)) => {
                t.status_description = Some(decode_component(v))
            }
            ("statuscode", Some(v)) if is_hc => t.status_code = Some(decode_component(v)),
            ("statusdescription", Some(v)) if is_hc => {
                t.status_description = Some(decode_component(v))
            }
            (k2, Some(_)) if k2.starts_with("sb-hc-") => {}
            _ => kept.push(pair),
        }
    }
    if any {
        // Preserve everything else verbatim, including empty pairs.
        t.app_query = kept.join("&");
    }
    if is_hc {
        if t.path.is_empty() {
            return Err(UrlError::MissingPath);
        }
        let a = action_raw.ok_or(UrlError::MissingAction)?;
        t.action = Some(Action::parse(&a).ok_or(UrlError::UnknownAction(a))?);
    }
    Ok(t)
}

/// Finds the longest entity name that is a segment prefix of `path` (case-insensitive).
/// Returns the matched entity (as given by `names`) and the remaining suffix (starting with
/// `/`, or empty).
pub fn longest_prefix<'a, I>(path: &str, names: I) -> Option<(&'a str, String)>
where
    I: IntoIterator<Item = &'a str>,
{
    let p = path.trim_end_matches('/');
    let lp = p.to_ascii_lowercase();
    let mut best: Option<&'a str> = None;
    for n in names {
        let ln = n.trim_matches('/').to_ascii_lowercase();
        if ln.is_empty() {
            continue;
        }
        let ok = lp == ln || (lp.starts_with(&ln) && lp.as_bytes().get(ln.len()) == Some(&b'/'));
        if ok && best.is_none_or(|b| b.trim_matches('/').len() < ln.len()) {
            best = Some(n);
        }
    }
    best.map(|n| {
        let len = n.trim_matches('/').len();
        (n, path.get(len..).unwrap_or("").to_string())
    })
}

/// Removes every `sb-hc-*=value` pair from a raw query; bare `sb-hc-x` keys without `=` stay.
pub fn strip_reserved(query: &str) -> String {
    query
        .split('&')
        .filter(|pair| match pair.find('=') {
            Some(i) => !pair[..i].to_ascii_lowercase().starts_with("sb-hc-"),
            None => true,
        })
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_url() {
        let t = parse_target("/$hc/hyco?sb-hc-action=listen&sb-hc-id=abc").unwrap();
        assert_eq!(t.action, Some(Action::Listen));
        assert_eq!(t.path, "hyco");
        assert_eq!(t.id.as_deref(), Some("abc"));
        assert_eq!(t.app_query, "");
    }

    #[test]
    fn connect_keeps_app_query() {
        let t = parse_target(
            "/$hc/a/b/c?x=1&sb-hc-action=connect&y=%2B+&sb-hc-token=SharedAccessSignature%20sr%3Dx",
        )
        .unwrap();
        assert_eq!(t.action, Some(Action::Connect));
        assert_eq!(t.path, "a/b/c");
        assert_eq!(t.app_query, "x=1&y=%2B+");
        assert_eq!(t.token.as_deref(), Some("SharedAccessSignature sr=x"));
    }

    #[test]
    fn reject_both_spellings() {
        let a = parse_target("/$hc/h?sb-hc-action=accept&sb-hc-id=1&sb-hc-statusCode=418&sb-hc-statusDescription=I%27m+a+teapot").unwrap();
        assert_eq!(a.status_code.as_deref(), Some("418"));
        assert_eq!(a.status_description.as_deref(), Some("I'm a teapot"));
        let b = parse_target(
            "/$hc/h?sb-hc-action=accept&sb-hc-id=1&statusCode=401&statusDescription=no",
        )
        .unwrap();
        assert_eq!(b.status_code.as_deref(), Some("401"));
        assert_eq!(b.status_description.as_deref(), Some("no"));
    }

    #[test]
    fn errors() {
        assert_eq!(parse_target("/$hc/h"), Err(UrlError::MissingAction));
        assert_eq!(
            parse_target("/$hc/h?sb-hc-action=dance"),
            Err(UrlError::UnknownAction("dance".into()))
        );
        assert_eq!(
            parse_target("/$hc/?sb-hc-action=listen"),
            Err(UrlError::MissingPath)
        );
        assert_eq!(parse_target("x"), Err(UrlError::NotOriginForm));
        assert!(matches!(
            parse_target(&"/a".repeat(5000)),
            Err(UrlError::TooLong(_))
        ));
    }

    #[test]
    fn http_target() {
        let t = parse_target("/hyco/sub/path?a=1&sb-hc-token=xyz&b=2&sb-hc-x").unwrap();
        assert_eq!(t.action, None);
        assert_eq!(t.path, "hyco/sub/path");
        assert_eq!(t.app_query, "a=1&b=2&sb-hc-x");
        assert_eq!(t.token.as_deref(), Some("xyz"));
    }

    #[test]
    fn prefix_lookup() {
        let names = ["a", "a/b", "ab", "Credit-Check"];
        assert_eq!(
            longest_prefix("a/b/c", names.iter().copied()),
            Some(("a/b", "/c".into()))
        );
        assert_eq!(
            longest_prefix("a/bc", names.iter().copied()),
            Some(("a", "/bc".into()))
        );
        assert_eq!(
            longest_prefix("ab", names.iter().copied()),
            Some(("ab", "".into()))
        );
        assert_eq!(
            longest_prefix("credit-check/x", names.iter().copied()),
            Some(("Credit-Check", "/x".into()))
        );
        assert_eq!(longest_prefix("zz", names.iter().copied()), None);
    }

    #[test]
    fn strip() {
        assert_eq!(
            strip_reserved("a=1&sb-hc-id=2&&sb-hc-x&B=3"),
            "a=1&&sb-hc-x&B=3"
        );
    }
}
