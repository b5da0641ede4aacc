//! Entities: namespaces, hybrid connections, SAS rules, and the authorization decision.

use hyrelay_hc::sas::{Rights, SasToken, TokenError};
use rand::RngCore;
use serde::{Deserialize, Serialize};

/// A SAS rule (authorization policy) with two keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    /// Rule name (`skn`).
    pub name: String,
    /// Rights granted.
    #[serde(with = "rights_serde")]
    pub rights: Rights,
    /// Primary key text.
    pub primary_key: String,
    /// Secondary key text.
    pub secondary_key: String,
    /// Defined in the configuration file (cannot be deleted at run time).
    #[serde(skip)]
    pub fixed: bool,
}

mod rights_serde {
    use hyrelay_hc::sas::Rights;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(r: &Rights, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(r.names())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Rights, D::Error> {
        let v: Vec<String> = Vec::deserialize(d)?;
        Rights::parse_list(&v.join(",")).map_err(serde::de::Error::custom)
    }
}

/// A fresh random key: 32 random bytes in base64, as Azure generates them.
pub fn new_key() -> String {
    use base64::Engine;
    let mut b = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut b);
    base64::engine::general_purpose::STANDARD.encode(b)
}

impl Rule {
    /// A rule with fresh keys.
    pub fn generate(name: &str, rights: Rights) -> Rule {
        Rule {
            name: name.to_string(),
            rights,
            primary_key: new_key(),
            secondary_key: new_key(),
            fixed: false,
        }
    }
}

/// A hybrid connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HybridConnection {
    /// Name (path), may contain `/`.
    pub name: String,
    /// Senders need a Send token.
    #[serde(default = "yes")]
    pub requires_client_authorization: bool,
    /// Entity-level rules.
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// Free text.
    #[serde(default)]
    pub user_metadata: String,
    /// Creation time (unix seconds).
    #[serde(default)]
    pub created_at: u64,
    /// Defined in the configuration file.
    #[serde(skip)]
    pub fixed: bool,
}

fn yes() -> bool {
    true
}

/// A namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Namespace {
    /// Name.
    pub name: String,
    /// Host names served; empty = every host.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Namespace-level rules.
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// Hybrid connections.
    #[serde(default)]
    pub hybrid_connections: Vec<HybridConnection>,
    /// Persistent WCF relays (`hyrelay wcfrelay create`); dynamic ones exist only while
    /// their listeners are registered.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub wcf_relays: Vec<WcfRelay>,
}

/// A persistent WCF relay (Azure's `az relay wcfrelay`): listeners that register with
/// `com.microsoft:dynamic-relay = false` need one; its type decides which listeners may
/// register and whether senders need a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WcfRelay {
    /// Name (path), may contain `/`.
    pub name: String,
    /// `nettcp` or `http` (as Azure's relay types), or `oneway` / `event`.
    pub relay_type: String,
    /// Senders need a Send token.
    #[serde(default = "yes")]
    pub requires_client_authorization: bool,
    /// Creation time (unix seconds).
    #[serde(default)]
    pub created_at: u64,
    /// Defined in the configuration file.
    #[serde(skip)]
    pub fixed: bool,
}

impl WcfRelay {
    /// The AMQP `listener-type` values a relay of this type accepts.
    pub fn listener_types(&self) -> &'static [&'static str] {
        match self.relay_type.as_str() {
            "nettcp" => &["RelayedConnection", "DirectConnection"],
            "http" => &["RelayedHttp"],
            "oneway" => &["Unicast"],
            "event" => &["Multicast"],
            _ => &[],
        }
    }
}

impl Namespace {
    /// Whether this namespace serves `host` (port ignored).
    pub fn serves(&self, host: &str) -> bool {
        if self.hosts.is_empty() {
            return true;
        }
        let h = strip_port(host);
        self.hosts.iter().any(|x| x.eq_ignore_ascii_case(h))
    }

    /// Finds the hybrid connection whose name is the longest segment prefix of `path`.
    pub fn find_hc(&self, path: &str) -> Option<(&HybridConnection, String)> {
        let (name, suffix) = hyrelay_hc::url::longest_prefix(
            path,
            self.hybrid_connections.iter().map(|h| h.name.as_str()),
        )?;
        let hc = self.hybrid_connections.iter().find(|h| h.name == name)?;
        Some((hc, suffix))
    }

    /// Exact (case-insensitive) lookup.
    pub fn hc(&self, name: &str) -> Option<&HybridConnection> {
        self.hybrid_connections
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name.trim_matches('/')))
    }

    /// A persistent WCF relay by exact name (case-insensitive).
    pub fn wcf_relay(&self, name: &str) -> Option<&WcfRelay> {
        let n = name.trim_matches('/');
        self.wcf_relays
            .iter()
            .find(|w| w.name.eq_ignore_ascii_case(n))
    }

    /// Mutable exact lookup.
    pub fn hc_mut(&mut self, name: &str) -> Option<&mut HybridConnection> {
        self.hybrid_connections
            .iter_mut()
            .find(|h| h.name.eq_ignore_ascii_case(name.trim_matches('/')))
    }
}

/// Strips `:port` from a Host header value (keeps IPv6 brackets).
pub fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        match host.find(']') {
            Some(i) => &host[..=i],
            None => host,
        }
    } else {
        host.split(':').next().unwrap_or(host)
    }
}

/// A successful authorization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorized {
    /// The rule that signed the token.
    pub rule: String,
    /// Token expiry (unix seconds).
    pub expiry: u64,
}

/// Checks a token for `needed` rights on `hc` (or on the namespace when `hc` is `None`).
/// Entity rules are looked up first, then namespace rules. Clock skew of `skew` seconds is
/// tolerated on expiry.
pub fn authorize(
    ns: &Namespace,
    hc: Option<&HybridConnection>,
    token: Option<&str>,
    needed: Rights,
    now: u64,
    skew: u64,
) -> Result<Authorized, TokenError> {
    let text = token.ok_or(TokenError::Missing)?;
    let t = SasToken::parse(text)?;
    let rule = hc
        .and_then(|h| h.rules.iter().find(|r| r.name == t.key_name))
        .or_else(|| ns.rules.iter().find(|r| r.name == t.key_name))
        .ok_or_else(|| TokenError::UnknownRule(t.key_name.clone()))?;
    // Both checks run, in constant time each, whatever the first one says.
    let p = t.signature_matches(&rule.primary_key);
    let s = t.signature_matches(&rule.secondary_key);
    if !(p | s) {
        return Err(TokenError::InvalidSignature);
    }
    if t.expiry + skew < now {
        return Err(TokenError::Expired {
            expired_at: t.expiry,
            now,
        });
    }
    let aud = t.audience();
    let host_ok = ns.hosts.is_empty() || ns.serves(&aud.host);
    let path_ok = match hc {
        Some(h) => aud.covers_path(&h.name),
        None => aud.path.is_empty(),
    };
    if !host_ok || !path_ok {
        return Err(TokenError::WrongAudience(t.resource.clone()));
    }
    if !rule.rights.allows(needed) {
        return Err(TokenError::MissingRight {
            rule: rule.name.clone(),
            granted: rule.rights,
            needed,
        });
    }
    Ok(Authorized {
        rule: rule.name.clone(),
        expiry: t.expiry,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyrelay_hc::sas::sign;

    fn ns() -> Namespace {
        Namespace {
            name: "ns".into(),
            hosts: vec!["relay.example".into(), "127.0.0.1".into()],
            rules: vec![
                Rule::generate("root", Rights::ALL),
                Rule::generate("l", Rights::LISTEN),
            ],
            wcf_relays: Vec::new(),
            hybrid_connections: vec![HybridConnection {
                name: "hc".into(),
                requires_client_authorization: true,
                rules: vec![Rule::generate("s", Rights::SEND)],
                user_metadata: String::new(),
                created_at: 0,
                fixed: false,
            }],
        }
    }

    #[test]
    fn matrix() {
        let n = ns();
        let hc = n.hc("hc");
        let now = 1_000_000;
        let root = &n.rules[0];
        let t = sign(
            "http://relay.example:443/hc",
            "root",
            &root.primary_key,
            now + 60,
        );
        assert!(authorize(&n, hc, Some(&t), Rights::LISTEN, now, 0).is_ok());
        let t2 = sign("sb://RELAY.example", "root", &root.secondary_key, now + 60);
        assert!(authorize(&n, hc, Some(&t2), Rights::SEND, now, 0).is_ok());
        // wrong key
        let bad = sign("http://relay.example/hc", "root", "nope", now + 60);
        assert_eq!(
            authorize(&n, hc, Some(&bad), Rights::SEND, now, 0),
            Err(TokenError::InvalidSignature)
        );
        // expired
        let old = sign(
            "http://relay.example/hc",
            "root",
            &root.primary_key,
            now - 10,
        );
        assert!(matches!(
            authorize(&n, hc, Some(&old), Rights::SEND, now, 0),
            Err(TokenError::Expired { .. })
        ));
        assert!(authorize(&n, hc, Some(&old), Rights::SEND, now, 30).is_ok());
        // wrong rights
        let l = sign(
            "http://relay.example/hc",
            "l",
            &n.rules[1].primary_key,
            now + 60,
        );
        let e = authorize(&n, hc, Some(&l), Rights::SEND, now, 0).unwrap_err();
        assert_eq!(e.status(), 403);
        // entity rule
        let s = sign(
            "http://relay.example/hc",
            "s",
            &n.hybrid_connections[0].rules[0].primary_key,
            now + 60,
        );
        assert!(authorize(&n, hc, Some(&s), Rights::SEND, now, 0).is_ok());
        assert_eq!(
            authorize(&n, hc, Some(&s), Rights::LISTEN, now, 0)
                .unwrap_err()
                .status(),
            403
        );
        // wrong audience
        let w = sign(
            "http://relay.example/other",
            "root",
            &root.primary_key,
            now + 60,
        );
        assert!(matches!(
            authorize(&n, hc, Some(&w), Rights::SEND, now, 0),
            Err(TokenError::WrongAudience(_))
        ));
        let wh = sign(
            "http://evil.example/hc",
            "root",
            &root.primary_key,
            now + 60,
        );
        assert!(matches!(
            authorize(&n, hc, Some(&wh), Rights::SEND, now, 0),
            Err(TokenError::WrongAudience(_))
        ));
        // unknown rule, missing
        let u = sign("http://relay.example/hc", "ghost", "k", now + 60);
        assert!(matches!(
            authorize(&n, hc, Some(&u), Rights::SEND, now, 0),
            Err(TokenError::UnknownRule(_))
        ));
        assert_eq!(
            authorize(&n, hc, None, Rights::SEND, now, 0),
            Err(TokenError::Missing)
        );
    }

    #[test]
    fn lookup() {
        let n = ns();
        assert_eq!(
            n.find_hc("HC/x/y").map(|(h, s)| (h.name.clone(), s)),
            Some(("hc".into(), "/x/y".into()))
        );
        assert!(n.serves("RELAY.example:9443"));
        assert!(!n.serves("other"));
    }
}
