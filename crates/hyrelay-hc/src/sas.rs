//! Shared Access Signature tokens.
//!
//! `SharedAccessSignature sr={urlenc resource}&sig={urlenc base64 HMAC}&se={unix secs}&skn={rule}`.
//! The signature is HMAC-SHA256 keyed with the UTF-8 bytes of the key *text* (never
//! base64-decoded) over `sr_as_written + "\n" + se`. Verification works on the `sr` exactly as
//! it appears in the token (clients use upper- and lower-case hex escapes) and compares in
//! constant time.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha2::Sha256;
use thiserror::Error;

type HmacSha256 = Hmac<Sha256>;

/// Longest token accepted, in bytes.
pub const MAX_TOKEN_LEN: usize = 4096;
/// Longest rule (key) name.
pub const MAX_KEY_NAME_LEN: usize = 256;

/// `encodeURIComponent`'s set: everything but `A-Z a-z 0-9 - _ . ! ~ * ' ( )`.
const URI_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'!')
    .remove(b'~')
    .remove(b'*')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')');

/// Percent-encodes like JavaScript's `encodeURIComponent` (upper-case hex).
pub fn encode_component(s: &str) -> String {
    utf8_percent_encode(s, URI_COMPONENT).to_string()
}

/// A set of rights: Listen, Send, Manage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Rights(u8);

impl Rights {
    /// No rights.
    pub const NONE: Rights = Rights(0);
    /// Open listeners (control channels).
    pub const LISTEN: Rights = Rights(1);
    /// Connect as a sender / send HTTP requests.
    pub const SEND: Rights = Rights(2);
    /// Manage entities and rules. Implies Listen and Send.
    pub const MANAGE: Rights = Rights(4);
    /// All three.
    pub const ALL: Rights = Rights(7);

    /// Union.
    pub fn union(self, o: Rights) -> Rights {
        Rights(self.0 | o.0)
    }

    /// Whether every right in `needed` is granted (Manage grants everything).
    pub fn allows(self, needed: Rights) -> bool {
        let effective = if self.0 & 4 != 0 { 7 } else { self.0 };
        effective & needed.0 == needed.0
    }

    /// Parses `listen,send,manage` (any case, `,` or whitespace separated).
    pub fn parse_list(s: &str) -> Result<Rights, String> {
        let mut r = Rights::NONE;
        for part in s.split(|c: char| c == ',' || c.is_whitespace()) {
            if part.is_empty() {
                continue;
            }
            r = r.union(Rights::parse_one(part)?);
        }
        Ok(r)
    }

    /// Parses one right name.
    pub fn parse_one(s: &str) -> Result<Rights, String> {
        match s.to_ascii_lowercase().as_str() {
            "listen" => Ok(Rights::LISTEN),
            "send" => Ok(Rights::SEND),
            "manage" => Ok(Rights::MANAGE),
            other => Err(format!(
                "unknown right '{other}' (expected listen, send or manage)"
            )),
        }
    }

    /// Names of the rights held, in Azure's order.
    pub fn names(self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.0 & 1 != 0 {
            v.push("listen");
        }
        if self.0 & 2 != 0 {
            v.push("send");
        }
        if self.0 & 4 != 0 {
            v.push("manage");
        }
        v
    }
}

impl std::fmt::Display for Rights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.names();
        if n.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&n.join(","))
        }
    }
}

/// Why a token was not accepted. [`TokenError::status`] maps it to the HTTP status.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenError {
    /// No token was presented.
    #[error("a token is required: send a SharedAccessSignature in the ServiceBusAuthorization header or the sb-hc-token query parameter")]
    Missing,
    /// The token text is malformed.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// `skn` names no rule of the entity or namespace.
    #[error("the token names the rule '{0}', which does not exist for this entity")]
    UnknownRule(String),
    /// The signature does not match any key of the rule.
    #[error("the token has an invalid signature")]
    InvalidSignature,
    /// `se` has passed.
    #[error("the token expired at {expired_at} (now {now})")]
    Expired {
        /// `se`.
        expired_at: u64,
        /// The time of the check.
        now: u64,
    },
    /// The token's audience (`sr`) does not cover the entity.
    #[error("the token's audience '{0}' does not cover this entity")]
    WrongAudience(String),
    /// The rule lacks the needed right.
    #[error("the token's rule '{rule}' grants {granted} but {needed} is required")]
    MissingRight {
        /// Rule name.
        rule: String,
        /// Rights the rule has.
        granted: Rights,
        /// Rights needed.
        needed: Rights,
    },
}

impl TokenError {
    /// A short label for metrics (`missing`, `malformed`, `unknown_rule`,
    /// `invalid_signature`, `expired`, `wrong_audience`, `missing_right`).
    pub fn reason(&self) -> &'static str {
        match self {
            TokenError::Missing => "missing",
            TokenError::Malformed(_) => "malformed",
            TokenError::UnknownRule(_) => "unknown_rule",
            TokenError::InvalidSignature => "invalid_signature",
            TokenError::Expired { .. } => "expired",
            TokenError::WrongAudience(_) => "wrong_audience",
            TokenError::MissingRight { .. } => "missing_right",
        }
    }

    /// 401 for missing/bad/expired tokens, 403 for wrong audience or rights.
    pub fn status(&self) -> u16 {
        match self {
            TokenError::WrongAudience(_) | TokenError::MissingRight { .. } => 403,
            _ => 401,
        }
    }
}

/// A parsed SAS token. Keeps the raw `sr` text, which is what was signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SasToken {
    /// `sr` as written in the token (percent-encoded).
    pub raw_resource: String,
    /// `sr` decoded.
    pub resource: String,
    /// Signature bytes (base64-decoded).
    pub signature: Vec<u8>,
    /// `se` as written.
    pub raw_expiry: String,
    /// `se`, seconds since 1970.
    pub expiry: u64,
    /// `skn`.
    pub key_name: String,
}

/// Names the legacy token kinds Microsoft's WCF Relay client could send instead of a SAS, so
/// the refusal says what was sent.
fn unsupported_kind(text: &str) -> Option<&'static str> {
    let lower = text
        .get(..text.len().min(4096))
        .unwrap_or("")
        .to_ascii_lowercase();
    if lower.starts_with("wrap ") || (lower.contains("hmacsha256=") && lower.contains("issuer=")) {
        Some("ACS SharedSecret / SimpleWebToken (SWT)")
    } else if lower.starts_with('<') && lower.contains("assertion") {
        Some("SAML")
    } else if lower.starts_with("negotiate ")
        || lower.starts_with("ntlm ")
        || lower.starts_with("kerberos ")
    {
        Some("Windows (Negotiate/Kerberos/NTLM)")
    } else {
        None
    }
}

impl SasToken {
    /// Parses `SharedAccessSignature k=v&k=v…` (keyword and field names case-insensitive,
    /// field order free).
    pub fn parse(text: &str) -> Result<SasToken, TokenError> {
        if text.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed(format!(
                "token is {} bytes, longer than {MAX_TOKEN_LEN}",
                text.len()
            )));
        }
        let text = text.trim();
        if let Some(kind) = unsupported_kind(text) {
            return Err(TokenError::Malformed(format!(
                "{kind} tokens are not supported: hyrelay accepts Shared Access Signatures only (signed with a SAS rule's key; in .NET, TokenProvider.CreateSharedAccessSignatureTokenProvider)"
            )));
        }
        let (kw, rest) = text.split_once(' ').ok_or_else(|| {
            TokenError::Malformed(
                "expected 'SharedAccessSignature sr=...&sig=...&se=...&skn=...'".into(),
            )
        })?;
        if !kw.eq_ignore_ascii_case("SharedAccessSignature") {
            return Err(TokenError::Malformed(
                "the token does not start with 'SharedAccessSignature'".into(),
            ));
        }
        let (mut sr, mut sig, mut se, mut skn) = (None, None, None, None);
        for field in rest.trim().split('&') {
            let (k, v) = field
                .split_once('=')
                .ok_or_else(|| TokenError::Malformed("field without '=' in token".to_string()))?;
            match k.to_ascii_lowercase().as_str() {
                "sr" => sr = Some(v),
                "sig" => sig = Some(v),
                "se" => se = Some(v),
                "skn" => skn = Some(v),
                _ => {}
            }
        }
        let sr = sr.ok_or_else(|| TokenError::Malformed("missing 'sr'".into()))?;
        let sig = sig.ok_or_else(|| TokenError::Malformed("missing 'sig'".into()))?;
        let se = se.ok_or_else(|| TokenError::Malformed("missing 'se'".into()))?;
        let skn = skn.ok_or_else(|| TokenError::Malformed("missing 'skn'".into()))?;
        let expiry: u64 = se
            .parse()
            .map_err(|_| TokenError::Malformed("'se' is not a number of seconds".into()))?;
        let sig_text = percent_decode_str(sig).decode_utf8_lossy();
        let signature = B64
            .decode(sig_text.as_bytes())
            .map_err(|_| TokenError::Malformed("'sig' is not base64".into()))?;
        let key_name = percent_decode_str(skn).decode_utf8_lossy().into_owned();
        if key_name.len() > MAX_KEY_NAME_LEN {
            return Err(TokenError::Malformed("'skn' is too long".into()));
        }
        Ok(SasToken {
            raw_resource: sr.to_string(),
            resource: percent_decode_str(sr).decode_utf8_lossy().into_owned(),
            signature,
            raw_expiry: se.to_string(),
            expiry,
            key_name,
        })
    }

    /// Checks the signature against one key text, in constant time.
    pub fn signature_matches(&self, key: &str) -> bool {
        let Ok(mut mac) = HmacSha256::new_from_slice(key.as_bytes()) else {
            return false;
        };
        mac.update(self.raw_resource.as_bytes());
        mac.update(b"\n");
        mac.update(self.raw_expiry.as_bytes());
        mac.verify_slice(&self.signature).is_ok()
    }

    /// The audience split into (host, path) for [`audience_covers`].
    pub fn audience(&self) -> Audience {
        Audience::parse(&self.resource)
    }
}

/// Creates a token for `resource` (a URI such as `http://ns/hc`), valid until `expiry`.
pub fn sign(resource: &str, key_name: &str, key: &str, expiry: u64) -> String {
    let sr = encode_component(resource);
    let mut mac = HmacSha256::new_from_slice(key.as_bytes()).expect("HMAC takes any key length");
    mac.update(sr.as_bytes());
    mac.update(b"\n");
    mac.update(expiry.to_string().as_bytes());
    let sig = B64.encode(mac.finalize().into_bytes());
    format!(
        "SharedAccessSignature sr={sr}&sig={}&se={expiry}&skn={}",
        encode_component(&sig),
        encode_component(key_name)
    )
}

/// A token audience: host (lower-case, no port) and path (lower-case, no `$hc/`, no
/// leading/trailing slashes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audience {
    /// Host without port.
    pub host: String,
    /// Path segments joined with `/`.
    pub path: String,
}

impl Audience {
    /// Parses a decoded `sr`; the scheme, port, query and fragment are ignored.
    pub fn parse(sr: &str) -> Audience {
        let s = match sr.find("://") {
            Some(i) => &sr[i + 3..],
            None => sr,
        };
        let s = s.split(['?', '#']).next().unwrap_or("");
        let (authority, path) = match s.find('/') {
            Some(i) => (&s[..i], &s[i + 1..]),
            None => (s, ""),
        };
        let host = if authority.starts_with('[') {
            authority.split(']').next().unwrap_or("").to_string() + "]"
        } else {
            authority.split(':').next().unwrap_or("").to_string()
        };
        let mut path = path.trim_matches('/').to_ascii_lowercase();
        if let Some(p) = path.strip_prefix("$hc/") {
            path = p.to_string();
        } else if path == "$hc" {
            path.clear();
        }
        Audience {
            host: host.to_ascii_lowercase(),
            path,
        }
    }

    /// Whether this audience covers the entity `entity_path`: equal, or a segment prefix of it;
    /// the empty path covers the whole namespace.
    pub fn covers_path(&self, entity_path: &str) -> bool {
        let e = entity_path.trim_matches('/').to_ascii_lowercase();
        self.path.is_empty()
            || e == self.path
            || (e.starts_with(&self.path) && e.as_bytes().get(self.path.len()) == Some(&b'/'))
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn legacy_token_kinds_are_named_in_the_refusal() {
        for (t, kind) in [
            ("WRAP access_token=\"net.windows.net...\"", "SimpleWebToken"),
            (
                "Issuer=owner&Audience=http%3a%2f%2fns&ExpiresOn=1&HMACSHA256=abc",
                "SimpleWebToken",
            ),
            (
                "<saml:Assertion xmlns:saml=\"urn:oasis:names:tc:SAML:1.0:assertion\"/>",
                "SAML",
            ),
            ("Negotiate YIIF", "Windows"),
        ] {
            match SasToken::parse(t) {
                Err(TokenError::Malformed(m)) => assert!(
                    m.contains(kind) && m.contains("Shared Access Signatures only"),
                    "{m}"
                ),
                other => panic!("{t}: {other:?}"),
            }
        }
    }

    use super::*;

    const KEY: &str = "dGVzdGtleXRlc3RrZXl0ZXN0a2V5dGVzdGtleTEyMzQ=";

    #[test]
    fn sign_and_verify() {
        let t = sign("http://127.0.0.1:443/hyco", "Root", KEY, 2_000_000_000);
        let p = SasToken::parse(&t).unwrap();
        assert!(p.signature_matches(KEY));
        assert!(!p.signature_matches("other"));
        assert_eq!(p.key_name, "Root");
        assert_eq!(p.expiry, 2_000_000_000);
        assert_eq!(
            p.audience(),
            Audience {
                host: "127.0.0.1".into(),
                path: "hyco".into()
            }
        );
    }

    #[test]
    fn lower_case_hex_sr_verifies_over_raw_text() {
        // Sign over a lower-case-hex sr, as HttpUtility.UrlEncode produces it.
        let sr = "http%3a%2f%2fns.example%2fhc%2f";
        let se = "2000000000";
        let mut mac = HmacSha256::new_from_slice(KEY.as_bytes()).unwrap();
        mac.update(format!("{sr}\n{se}").as_bytes());
        let sig = B64.encode(mac.finalize().into_bytes());
        // Python leaves '/' unescaped in sig.
        let tok = format!(
            "sharedaccesssignature SIG={}&SE={se}&SKN=r&SR={sr}",
            sig.replace('+', "%2B").replace('=', "%3D")
        );
        let p = SasToken::parse(&tok).unwrap();
        assert!(p.signature_matches(KEY));
        assert_eq!(p.audience().path, "hc");
    }

    #[test]
    fn malformed() {
        assert!(matches!(
            SasToken::parse("Bearer x"),
            Err(TokenError::Malformed(_))
        ));
        assert!(matches!(
            SasToken::parse("SharedAccessSignature sr=a&sig=b"),
            Err(TokenError::Malformed(_))
        ));
        assert!(matches!(
            SasToken::parse("SharedAccessSignature sr=a&sig=!!&se=1&skn=k"),
            Err(TokenError::Malformed(_))
        ));
        assert!(matches!(
            SasToken::parse("SharedAccessSignature sr=a&sig=AA==&se=x&skn=k"),
            Err(TokenError::Malformed(_))
        ));
        assert!(matches!(
            SasToken::parse(&"x".repeat(5000)),
            Err(TokenError::Malformed(_))
        ));
    }

    #[test]
    fn audience_rules() {
        let a = Audience::parse("sb://NS.example:5671/$hc/A/B/");
        assert_eq!(a.host, "ns.example");
        assert_eq!(a.path, "a/b");
        assert!(a.covers_path("a/b"));
        assert!(a.covers_path("A/B/c"));
        assert!(!a.covers_path("a/bc"));
        assert!(!a.covers_path("a"));
        assert!(Audience::parse("sb://ns").covers_path("anything"));
        assert!(Audience::parse("http://ns/").covers_path("anything"));
    }

    #[test]
    fn rights() {
        assert!(Rights::MANAGE.allows(Rights::LISTEN));
        assert!(Rights::MANAGE.allows(Rights::SEND));
        assert!(!Rights::LISTEN.allows(Rights::SEND));
        assert_eq!(
            Rights::parse_list("listen, Send").unwrap(),
            Rights::LISTEN.union(Rights::SEND)
        );
        assert!(Rights::parse_list("fly").is_err());
        assert_eq!(Rights::ALL.to_string(), "listen,send,manage");
    }

    #[test]
    fn encode_matches_encode_uri_component() {
        assert_eq!(
            encode_component("http://a:443/b c"),
            "http%3A%2F%2Fa%3A443%2Fb%20c"
        );
        assert_eq!(encode_component("a+b/c=="), "a%2Bb%2Fc%3D%3D");
    }
}
