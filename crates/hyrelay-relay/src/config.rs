//! The relay configuration file (TOML, keys per `CONFIG.md`) and the run-time state file
//! (`state.json` in the data directory) holding entities and keys created through the
//! management API or CLI.

use std::fs;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hyrelay_hc::sas::Rights;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::model::{HybridConnection, Namespace, Rule};

/// Configuration and state errors, naming the file and what was expected.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The TOML is invalid or has unknown/mistyped keys.
    #[error("{path}: {message}")]
    Parse {
        /// File.
        path: PathBuf,
        /// toml's message, with line and column.
        message: String,
    },
    /// A value is out of range or inconsistent.
    #[error("{path}: {message}")]
    Invalid {
        /// File.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

fn de_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let s: Option<String> = Option::deserialize(d)?;
    match s {
        None => Ok(None),
        Some(s) => humantime::parse_duration(&s).map(Some).map_err(|e| {
            serde::de::Error::custom(format!("'{s}' is not a duration like 30s or 5m: {e}"))
        }),
    }
}

/// `[listen]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenSection {
    /// Plain ws/http.
    pub http: Option<SocketAddr>,
    /// wss/https.
    pub https: Option<SocketAddr>,
    /// Metrics, status page, management API.
    pub management: Option<SocketAddr>,
}

/// `[tls]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// `[gateway]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewaySection {
    /// Unique gateway id.
    pub id: Option<String>,
    /// Address listeners dial for rendezvous on this gateway.
    pub public_address: Option<String>,
}

/// `[store]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSection {
    /// Redis URL.
    pub redis: Option<String>,
    /// Registration TTL.
    #[serde(default, deserialize_with = "de_duration")]
    pub registration_ttl: Option<Duration>,
}

/// `[wcf_relay]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WcfRelaySection {
    /// 9350.
    pub oneway: Option<SocketAddr>,
    /// 9351.
    pub oneway_tls: Option<SocketAddr>,
    /// 9352.
    pub nettcp: Option<SocketAddr>,
    /// 9353.
    pub probe: Option<SocketAddr>,
    /// 9354.
    pub sbmp: Option<SocketAddr>,
    /// 5671.
    pub amqp: Option<SocketAddr>,
    /// The paths between the two faces that Azure does not have (one-way → Hybrid
    /// Connections HTTP listener, NetTcpRelay ⇄ Hybrid Connections). Default on.
    #[serde(default = "yes")]
    pub extensions: bool,
    /// A one-way message with no listener on its path: `fault` (EndpointNotFoundFault, the
    /// default) or `drop` (acknowledged and dropped, as Azure may do for NetEvent). Both are
    /// inferred.
    #[serde(default)]
    pub without_listener: WithoutListener,
}

/// `[wcf_relay] without_listener`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WithoutListener {
    /// EndpointNotFoundFault.
    #[default]
    Fault,
    /// SendReply, message dropped.
    Drop,
}

/// `[limits]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Listeners per hybrid connection (Azure: 25).
    #[serde(default = "d_listeners")]
    pub listeners_per_entity: usize,
    /// Largest control message and largest body sent on the control channel.
    #[serde(default = "d_control")]
    pub control_message_bytes: usize,
    /// How long a sender waits for its listener to dial the accept address.
    #[serde(default = "d_accept", deserialize_with = "de_duration_req")]
    pub accept_timeout: Duration,
    /// How long an expired listener token is tolerated before the channel is closed.
    #[serde(default = "d_grace", deserialize_with = "de_duration_req")]
    pub token_grace: Duration,
}

fn de_duration_req<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    de_duration(d)?.ok_or_else(|| serde::de::Error::custom("a duration is required"))
}
fn d_listeners() -> usize {
    25
}
fn d_control() -> usize {
    65536
}
fn d_accept() -> Duration {
    Duration::from_secs(30)
}
fn d_grace() -> Duration {
    Duration::from_secs(300)
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            listeners_per_entity: d_listeners(),
            control_message_bytes: d_control(),
            accept_timeout: d_accept(),
            token_grace: d_grace(),
        }
    }
}

/// A rule as written in the file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Name.
    pub name: String,
    /// Rights.
    pub rights: Vec<String>,
    /// Key text.
    pub primary_key: Option<String>,
    /// File holding the key text.
    pub primary_key_file: Option<PathBuf>,
    /// Key text.
    pub secondary_key: Option<String>,
    /// File holding the key text.
    pub secondary_key_file: Option<PathBuf>,
}

/// A hybrid connection as written in the file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HcConfig {
    /// Name.
    pub name: String,
    /// Senders need a token.
    #[serde(default = "yes")]
    pub requires_client_authorization: bool,
    /// Entity rules.
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
}

fn yes() -> bool {
    true
}

/// A WCF relay as written in the file (served by the WCF Relay face).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WcfRelayConfig {
    /// Name.
    pub name: String,
    /// nettcp | http | oneway | event.
    pub relay_type: String,
    /// Senders need a token.
    #[serde(default = "yes")]
    pub requires_client_authorization: bool,
}

/// A namespace as written in the file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamespaceConfig {
    /// Name.
    pub name: String,
    /// Host names (Host header) served by this namespace.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Namespace rules.
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
    /// Hybrid connections.
    #[serde(default)]
    pub hybrid_connections: Vec<HcConfig>,
    /// WCF relays.
    #[serde(default)]
    pub wcf_relays: Vec<WcfRelayConfig>,
}

/// The whole relay configuration file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayConfig {
    /// Run-time state directory.
    pub data_dir: Option<PathBuf>,
    /// Listening addresses.
    #[serde(default)]
    pub listen: ListenSection,
    /// Certificate files.
    pub tls: Option<TlsSection>,
    /// Gateway identity.
    #[serde(default)]
    pub gateway: GatewaySection,
    /// Shared store.
    #[serde(default)]
    pub store: StoreSection,
    /// WCF Relay face.
    pub wcf_relay: Option<WcfRelaySection>,
    /// Limits.
    #[serde(default)]
    pub limits: Limits,
    /// Namespaces.
    #[serde(default)]
    pub namespaces: Vec<NamespaceConfig>,
}

/// Rule names are unique within their scope (a token names its rule).
fn unique_rules(rules: &[RuleConfig], scope: &str) -> Result<(), String> {
    let mut seen = std::collections::HashSet::new();
    for r in rules {
        if !seen.insert(r.name.as_str()) {
            return Err(format!("{scope}: rule '{}' is defined twice", r.name));
        }
    }
    Ok(())
}

impl RelayConfig {
    /// Reads and validates a file.
    pub fn load(path: &Path) -> Result<RelayConfig, ConfigError> {
        let text = fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses and validates text (`path` is used in messages and to resolve key files).
    pub fn parse(text: &str, path: &Path) -> Result<RelayConfig, ConfigError> {
        let cfg: RelayConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        cfg.validate(path)?;
        Ok(cfg)
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let inv = |m: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            message: m,
        };
        if self.listen.http.is_none() && self.listen.https.is_none() {
            return Err(inv(
                "[listen] needs at least one of http = \"ADDR:PORT\" or https = \"ADDR:PORT\""
                    .into(),
            ));
        }
        if !(1..=1000).contains(&self.limits.listeners_per_entity) {
            return Err(inv("[limits] listeners_per_entity must be 1..1000".into()));
        }
        if !(1024..=16 * 1024 * 1024).contains(&self.limits.control_message_bytes) {
            return Err(inv(
                "[limits] control_message_bytes must be 1024..16777216".into()
            ));
        }
        if let Some(id) = &self.gateway.id {
            let ok = !id.is_empty()
                && id.len() <= 64
                && id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
            if !ok {
                return Err(inv(format!(
                    "[gateway] id = \"{id}\": use 1-64 letters, digits, '-', '_' or '.'"
                )));
            }
        }
        if let Some(p) = &self.gateway.public_address {
            let ok = (p.starts_with("ws://") || p.starts_with("wss://"))
                && p.split("://")
                    .nth(1)
                    .is_some_and(|h| !h.is_empty() && !h.contains(['?', '#']));
            if !ok {
                return Err(inv(format!("[gateway] public_address = \"{p}\": expected ws://HOST:PORT or wss://HOST:PORT, the address listeners dial to reach this gateway")));
            }
        }
        if let Some(url) = &self.store.redis {
            if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                return Err(inv(format!(
                    "[store] redis = \"{}\": expected redis://HOST:PORT[/DB]",
                    crate::store::redact_url(url)
                )));
            }
            if self.gateway.public_address.is_none() {
                return Err(inv("[store] redis needs [gateway] public_address: listeners on other gateways dial it to reach senders on this one".into()));
            }
        }
        if let Some(ttl) = self.store.registration_ttl {
            if ttl < Duration::from_secs(3) || ttl > Duration::from_secs(3600) {
                return Err(inv(
                    "[store] registration_ttl must be between 3s and 1h".into()
                ));
            }
        }
        let l = &self.limits;
        if l.accept_timeout < Duration::from_secs(1) || l.accept_timeout > Duration::from_secs(600)
        {
            return Err(inv(format!(
                "[limits] accept_timeout = {:?}: expected 1s to 10m (Azure: 30s)",
                l.accept_timeout
            )));
        }
        if l.token_grace > Duration::from_secs(86_400) {
            return Err(inv(format!(
                "[limits] token_grace = {:?}: expected at most 24h",
                l.token_grace
            )));
        }
        if l.listeners_per_entity == 0 || l.listeners_per_entity > 10_000 {
            return Err(inv(format!(
                "[limits] listeners_per_entity = {}: expected 1 to 10000 (Azure: 25)",
                l.listeners_per_entity
            )));
        }
        if !(1024..=64 << 20).contains(&l.control_message_bytes) {
            return Err(inv(format!(
                "[limits] control_message_bytes = {}: expected 1024 to 67108864 (Azure: 65536)",
                l.control_message_bytes
            )));
        }
        // Which namespace serves a Host header must not depend on the order in the file.
        let mut hosts: std::collections::HashMap<String, &str> = std::collections::HashMap::new();
        let mut catch_all: Option<&str> = None;
        for ns in &self.namespaces {
            if ns.hosts.is_empty() {
                if let Some(other) = catch_all.replace(&ns.name) {
                    return Err(inv(format!(
                        "namespaces '{other}' and '{}' both omit hosts (which means every host name); give each its own hosts",
                        ns.name
                    )));
                }
            }
            for h in &ns.hosts {
                if let Some(other) = hosts.insert(h.to_ascii_lowercase(), &ns.name) {
                    if other != ns.name {
                        return Err(inv(format!(
                            "host '{h}' is listed by namespaces '{other}' and '{}'; a host name belongs to one namespace",
                            ns.name
                        )));
                    }
                }
            }
        }
        let mut names = std::collections::HashSet::new();
        for ns in &self.namespaces {
            if !names.insert(ns.name.to_ascii_lowercase()) {
                return Err(inv(format!("namespace '{}' is defined twice", ns.name)));
            }
            unique_rules(&ns.rules, &format!("namespace '{}'", ns.name)).map_err(inv)?;
            for r in &ns.rules {
                r.to_rule(path)?;
            }
            let mut hcs = std::collections::HashSet::new();
            for hc in &ns.hybrid_connections {
                if hc.name.trim_matches('/').is_empty() {
                    return Err(inv(format!(
                        "namespace '{}': a hybrid connection has an empty name",
                        ns.name
                    )));
                }
                if !hcs.insert(hc.name.to_ascii_lowercase()) {
                    return Err(inv(format!(
                        "namespace '{}': hybrid connection '{}' is defined twice",
                        ns.name, hc.name
                    )));
                }
                unique_rules(
                    &hc.rules,
                    &format!("namespace '{}', hybrid connection '{}'", ns.name, hc.name),
                )
                .map_err(inv)?;
                for r in &hc.rules {
                    r.to_rule(path)?;
                }
            }
            let mut wcf = std::collections::HashSet::new();
            for w in &ns.wcf_relays {
                if w.name.trim_matches('/').is_empty() {
                    return Err(inv(format!(
                        "namespace '{}': a wcf relay has an empty name",
                        ns.name
                    )));
                }
                if !wcf.insert(w.name.trim_matches('/').to_ascii_lowercase()) {
                    return Err(inv(format!(
                        "namespace '{}': wcf relay '{}' is defined twice",
                        ns.name, w.name
                    )));
                }
                if !["nettcp", "http", "oneway", "event"].contains(&w.relay_type.as_str()) {
                    return Err(inv(format!(
                        "wcf relay '{}': relay_type '{}' must be nettcp, http, oneway or event",
                        w.name, w.relay_type
                    )));
                }
            }
        }
        Ok(())
    }

    /// The namespaces of the file as model objects (marked fixed).
    pub fn model(&self, path: &Path) -> Result<Vec<Namespace>, ConfigError> {
        let mut out = Vec::new();
        for ns in &self.namespaces {
            let mut rules = Vec::new();
            for r in &ns.rules {
                rules.push(r.to_rule(path)?);
            }
            let mut hcs = Vec::new();
            for h in &ns.hybrid_connections {
                let mut hr = Vec::new();
                for r in &h.rules {
                    hr.push(r.to_rule(path)?);
                }
                hcs.push(HybridConnection {
                    name: h.name.trim_matches('/').to_string(),
                    requires_client_authorization: h.requires_client_authorization,
                    rules: hr,
                    user_metadata: String::new(),
                    created_at: 0,
                    fixed: true,
                });
            }
            out.push(Namespace {
                name: ns.name.clone(),
                hosts: ns.hosts.clone(),
                rules,
                hybrid_connections: hcs,
                wcf_relays: ns
                    .wcf_relays
                    .iter()
                    .map(|w| crate::model::WcfRelay {
                        name: w.name.trim_matches('/').to_string(),
                        relay_type: w.relay_type.clone(),
                        requires_client_authorization: w.requires_client_authorization,
                        created_at: 0,
                        fixed: true,
                    })
                    .collect(),
            });
        }
        Ok(out)
    }
}

impl RuleConfig {
    fn to_rule(&self, path: &Path) -> Result<Rule, ConfigError> {
        let inv = |m: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            message: m,
        };
        let rights = Rights::parse_list(&self.rights.join(","))
            .map_err(|e| inv(format!("rule '{}': {e}", self.name)))?;
        if rights == Rights::NONE {
            return Err(inv(format!(
                "rule '{}': rights must not be empty",
                self.name
            )));
        }
        let read = |inline: &Option<String>,
                    file: &Option<PathBuf>,
                    which: &str|
         -> Result<Option<String>, ConfigError> {
            match (inline, file) {
                (Some(_), Some(_)) => Err(inv(format!(
                    "rule '{}': give {which}_key or {which}_key_file, not both",
                    self.name
                ))),
                (Some(k), None) => Ok(Some(k.clone())),
                (None, Some(f)) => {
                    let f2 = if f.is_relative() {
                        path.parent().unwrap_or(Path::new(".")).join(f)
                    } else {
                        f.clone()
                    };
                    fs::read_to_string(&f2)
                        .map(|s| Some(s.trim().to_string()))
                        .map_err(|source| ConfigError::Io { path: f2, source })
                }
                (None, None) => Ok(None),
            }
        };
        let primary =
            read(&self.primary_key, &self.primary_key_file, "primary")?.ok_or_else(|| {
                inv(format!(
                    "rule '{}': primary_key or primary_key_file is required",
                    self.name
                ))
            })?;
        if primary.len() > 256 || primary.is_empty() {
            return Err(inv(format!(
                "rule '{}': keys must be 1..256 characters",
                self.name
            )));
        }
        let secondary = read(&self.secondary_key, &self.secondary_key_file, "secondary")?
            .unwrap_or_else(crate::model::new_key);
        Ok(Rule {
            name: self.name.clone(),
            rights,
            primary_key: primary,
            secondary_key: secondary,
            fixed: true,
        })
    }
}

/// The run-time state file: entities and rules created at run time.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// Namespaces (for a configured namespace: only what was added at run time).
    #[serde(default)]
    pub namespaces: Vec<Namespace>,
}

impl State {
    /// `DIR/state.json`.
    pub fn path(dir: &Path) -> PathBuf {
        dir.join("state.json")
    }

    /// Loads the state (empty if the file does not exist).
    pub fn load(dir: &Path) -> Result<State, ConfigError> {
        let p = Self::path(dir);
        match fs::read_to_string(&p) {
            Ok(t) => serde_json::from_str(&t).map_err(|e| ConfigError::Parse {
                path: p,
                message: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(source) => Err(ConfigError::Io { path: p, source }),
        }
    }

    /// Writes the state atomically (temporary file, fsync, rename), readable by the owner only.
    pub fn save(&self, dir: &Path) -> Result<(), ConfigError> {
        use std::os::unix::fs::OpenOptionsExt;
        let io = |p: &Path| {
            let p = p.to_path_buf();
            move |source| ConfigError::Io { path: p, source }
        };
        fs::create_dir_all(dir).map_err(io(dir))?;
        let p = Self::path(dir);
        let tmp = dir.join(format!(".state.json.{}.tmp", std::process::id()));
        let text = serde_json::to_string_pretty(self).map_err(|e| ConfigError::Invalid {
            path: p.clone(),
            message: e.to_string(),
        })?;
        let mut f = fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io(&tmp))?;
        f.write_all(text.as_bytes()).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        fs::rename(&tmp, &p).map_err(io(&p))
    }
}

/// Merges the file's namespaces (fixed) with run-time additions.
pub fn merge(config: Vec<Namespace>, state: &State) -> Vec<Namespace> {
    let mut out = config;
    for sns in &state.namespaces {
        match out
            .iter_mut()
            .find(|n| n.name.eq_ignore_ascii_case(&sns.name))
        {
            Some(n) => {
                for r in &sns.rules {
                    if !n.rules.iter().any(|x| x.name == r.name) {
                        n.rules.push(r.clone());
                    }
                }
                for h in &sns.hybrid_connections {
                    match n.hc_mut(&h.name) {
                        Some(existing) => {
                            for r in &h.rules {
                                if !existing.rules.iter().any(|x| x.name == r.name) {
                                    existing.rules.push(r.clone());
                                }
                            }
                        }
                        None => n.hybrid_connections.push(h.clone()),
                    }
                }
                for w in &sns.wcf_relays {
                    if n.wcf_relay(&w.name).is_none() {
                        n.wcf_relays.push(w.clone());
                    }
                }
            }
            None => out.push(sns.clone()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_example_parses() {
        let t = r#"
data_dir = "/tmp/x"
[listen]
http = "127.0.0.1:9080"
https = "127.0.0.1:9443"
management = "127.0.0.1:9090"
[gateway]
id = "gw-a"
public_address = "wss://gw-a:443"
[store]
registration_ttl = "30s"
[limits]
listeners_per_entity = 25
control_message_bytes = 65536
accept_timeout = "30s"
token_grace = "5m"
[[namespaces]]
name = "contoso"
hosts = ["127.0.0.1", "localhost"]
  [[namespaces.rules]]
  name = "RootManageSharedAccessKey"
  rights = ["listen", "send", "manage"]
  primary_key = "abc"
  secondary_key = "def"
  [[namespaces.hybrid_connections]]
  name = "credit-check"
  requires_client_authorization = true
    [[namespaces.hybrid_connections.rules]]
    name = "sender"
    rights = ["send"]
    primary_key = "x"
  [[namespaces.wcf_relays]]
  name = "orders"
  relay_type = "nettcp"
"#;
        let c = RelayConfig::parse(t, Path::new("relay.toml")).unwrap();
        assert_eq!(c.limits.token_grace, Duration::from_secs(300));
        let m = c.model(Path::new("relay.toml")).unwrap();
        assert_eq!(m[0].hybrid_connections[0].rules[0].rights, Rights::SEND);
        assert!(m[0].rules[0].fixed);
    }

    #[test]
    fn unknown_key_is_refused_with_line() {
        let t = "[listen]\nhttp = \"127.0.0.1:1\"\nhtps = \"127.0.0.1:2\"\n";
        let e = RelayConfig::parse(t, Path::new("r.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("r.toml"), "{e}");
        assert!(e.contains("htps"), "{e}");
        assert!(e.contains("line 3"), "{e}");
    }

    #[test]
    fn invalid_values() {
        let e = RelayConfig::parse("[listen]\n", Path::new("r.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("at least one"), "{e}");
        let e = RelayConfig::parse(
            "[listen]\nhttp=\"127.0.0.1:1\"\n[limits]\naccept_timeout=\"soon\"\n",
            Path::new("r.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("duration"), "{e}");
        let e = RelayConfig::parse(
            "[listen]\nhttp=\"127.0.0.1:1\"\n[[namespaces]]\nname=\"a\"\n[[namespaces.rules]]\nname=\"r\"\nrights=[\"fly\"]\nprimary_key=\"k\"\n",
            Path::new("r.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("unknown right"), "{e}");
    }
}
