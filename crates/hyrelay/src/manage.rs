//! Management subcommands: offline on a data directory, or online with `-x`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use hyrelay_hc::sas::{self, Rights};
use hyrelay_hc::ConnectionString;
use hyrelay_relay::config::State;
use hyrelay_relay::mgmt::{policy_json, Ops};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::run::{ROOT_RULE, UP_NAMESPACE};
use crate::Target;

#[derive(clap::Subcommand)]
pub enum HycoCmd {
    /// Create a hybrid connection.
    Create {
        /// Name (path), e.g. credit-check or apps/credit-check.
        name: String,
        /// Senders need no token (listeners still do).
        #[arg(long)]
        no_client_auth: bool,
        #[command(flatten)]
        target: Target,
    },
    /// List hybrid connections.
    List {
        #[command(flatten)]
        target: Target,
    },
    /// Show one hybrid connection.
    Show {
        /// Name.
        name: String,
        #[command(flatten)]
        target: Target,
    },
    /// Delete a hybrid connection; its listeners are closed with 1001.
    Delete {
        /// Name.
        name: String,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(clap::Subcommand)]
pub enum WcfRelayCmd {
    /// Create a persistent WCF relay.
    ///
    /// Example: `hyrelay wcfrelay create credit-check --relay-type nettcp --data-dir .hyrelay`
    Create {
        /// Name (path), e.g. credit-check.
        name: String,
        /// nettcp (NetTcpRelayBinding listeners), http (the HTTP relay bindings), oneway
        /// (NetOnewayRelayBinding) or event (NetEventRelayBinding).
        #[arg(long, value_parser = ["nettcp", "http", "oneway", "event"], default_value = "nettcp")]
        relay_type: String,
        /// Senders need no token (RelayClientAuthenticationType.None; listeners still do).
        #[arg(long)]
        no_client_auth: bool,
        #[command(flatten)]
        target: Target,
    },
    /// List persistent WCF relays (online: with their listener counts).
    List {
        #[command(flatten)]
        target: Target,
    },
    /// Show one persistent WCF relay.
    Show {
        /// Name.
        name: String,
        #[command(flatten)]
        target: Target,
    },
    /// Delete a persistent WCF relay (registered listeners stay until they reconnect).
    Delete {
        /// Name.
        name: String,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(clap::Subcommand)]
pub enum PolicyCmd {
    /// Create a policy with fresh keys.
    Create {
        /// Policy name (the `SharedAccessKeyName`).
        name: String,
        /// Rights: listen, send, manage (comma separated).
        #[arg(long, value_name = "RIGHTS")]
        rights: String,
        /// Put the policy on this hybrid connection instead of the namespace.
        #[arg(long)]
        hyco: Option<String>,
        #[command(flatten)]
        target: Target,
    },
    /// List policies (keys are not shown; use `keys show`).
    List {
        /// List the policies of this hybrid connection.
        #[arg(long)]
        hyco: Option<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Delete a policy.
    Delete {
        /// Policy name.
        name: String,
        /// The policy belongs to this hybrid connection.
        #[arg(long)]
        hyco: Option<String>,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(clap::Subcommand)]
pub enum KeysCmd {
    /// Show both keys of a policy.
    Show {
        /// Policy name.
        policy: String,
        /// The policy belongs to this hybrid connection.
        #[arg(long)]
        hyco: Option<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Regenerate one key (tokens signed with it stop working at once).
    Renew {
        /// Policy name.
        policy: String,
        /// Regenerate the primary key (default).
        #[arg(long, conflicts_with = "secondary")]
        primary: bool,
        /// Regenerate the secondary key.
        #[arg(long)]
        secondary: bool,
        /// The policy belongs to this hybrid connection.
        #[arg(long)]
        hyco: Option<String>,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(clap::Args)]
pub struct ConnStrArgs {
    /// Policy to use (default RootManageSharedAccessKey).
    #[arg(long, default_value = ROOT_RULE)]
    policy: String,
    /// Add EntityPath=NAME (and look the policy up on this hybrid connection first).
    #[arg(long)]
    hyco: Option<String>,
    /// Endpoint host:port to put in the string (default 127.0.0.1:9080, `hyrelay up`'s plain port).
    #[arg(long, default_value = "127.0.0.1:9080")]
    endpoint: String,
    #[command(flatten)]
    target: Target,
}

#[derive(clap::Args)]
pub struct TokenArgs {
    /// Connection string with SharedAccessKeyName and SharedAccessKey.
    #[arg(
        long,
        value_name = "CS",
        env = "HYRELAY_CONNECTION_STRING",
        hide_env_values = true
    )]
    connection_string: String,
    /// Scope the token to this hybrid connection (default: EntityPath, else the namespace).
    #[arg(long)]
    hyco: Option<String>,
    /// Lifetime, e.g. 1h, 30m, 7d.
    #[arg(long, default_value = "1h")]
    ttl: String,
}

fn data_dir(t: &Target) -> PathBuf {
    t.data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(".hyrelay"))
}

/// Runs an offline operation on the data directory's state.
fn offline<T>(
    t: &Target,
    f: impl FnOnce(&mut Ops) -> Result<(T, bool), hyrelay_relay::mgmt::OpError>,
) -> Result<T> {
    let dir = data_dir(t);
    if !State::path(&dir).exists() {
        bail!(
            "{} holds no relay state: start `hyrelay up --data-dir {}` once, or pass --data-dir / -x",
            dir.display(),
            dir.display()
        );
    }
    let mut state = State::load(&dir)?;
    let merged = state.namespaces.clone();
    let ns = merged
        .first()
        .map(|n| n.name.clone())
        .unwrap_or_else(|| UP_NAMESPACE.to_string());
    let mut ops = Ops {
        merged: &merged,
        state: &mut state,
        namespace: ns,
    };
    let (out, changed) = f(&mut ops).map_err(|e| anyhow!("{}", e.message))?;
    if changed {
        state.save(&dir)?;
    }
    Ok(out)
}

/// Calls the management API of a running relay.
async fn api(t: &Target, method: &str, path: &str, body: Option<Value>) -> Result<Value> {
    let cs_text = t
        .connection_string
        .as_deref()
        .context("no -x connection string")?;
    let cs = ConnectionString::parse(cs_text)?;
    let (name, key) = match (&cs.key_name, &cs.key) {
        (Some(n), Some(k)) => (n.clone(), k.clone()),
        _ => bail!(
            "the connection string needs SharedAccessKeyName and SharedAccessKey (a Manage rule)"
        ),
    };
    let expiry = hyrelay_relay::core::now_secs() + 300;
    let token = sas::sign(&format!("http://{}/", cs.host), &name, &key, expiry);
    let port = cs.port.unwrap_or(443);
    let body_text = body.map(|b| b.to_string()).unwrap_or_default();
    let req = format!(
        "{method} /$hyrelay/{path} HTTP/1.1\r\nHost: {}\r\nAuthorization: {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body_text}",
        cs.authority(),
        body_text.len()
    );
    let addr = format!(
        "{}:{port}",
        cs.host.trim_start_matches('[').trim_end_matches(']')
    );
    let raw = match plain_call(&addr, &req).await {
        Ok(r) if r.starts_with(b"HTTP/1.") => r,
        _ => tls_call(&addr, &cs.host, &req, t.ca.as_ref()).await?,
    };
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status_line = head.lines().next().unwrap_or("");
    let code: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    if !(200..300).contains(&code) {
        bail!("relay answered {}: {}", status_line.trim(), body.trim());
    }
    serde_json::from_str(body).with_context(|| format!("relay answered non-JSON: {}", body.trim()))
}

async fn plain_call(addr: &str, req: &str) -> Result<Vec<u8>> {
    let mut s = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::net::TcpStream::connect(addr),
    )
    .await
    .context("connect timed out")?
    .with_context(|| format!("cannot reach the relay at {addr}"))?;
    s.write_all(req.as_bytes()).await?;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut out))
        .await
        .context("the relay did not answer")??;
    Ok(out)
}

async fn tls_call(addr: &str, host: &str, req: &str, ca: Option<&PathBuf>) -> Result<Vec<u8>> {
    let cfg = hyrelay_net::tls::client_config(&ca.into_iter().cloned().collect::<Vec<_>>(), false)?;
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("cannot reach the relay at {addr}"))?;
    let name = rustls::pki_types::ServerName::try_from(
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
    )
    .map_err(|e| anyhow!("bad host name {host}: {e}"))?;
    let mut s = tokio_rustls::TlsConnector::from(cfg)
        .connect(name, tcp)
        .await
        .with_context(|| {
            format!("TLS to {addr} failed (pass --ca DIR/ca.pem for a development certificate)")
        })?;
    s.write_all(req.as_bytes()).await?;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut out)).await;
    Ok(out)
}

fn print(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

fn hyco_q(h: &Option<String>) -> String {
    h.as_ref().map(|h| format!("?hyco={h}")).unwrap_or_default()
}

pub async fn hyco(c: HycoCmd) -> Result<()> {
    match c {
        HycoCmd::Create {
            name,
            no_client_auth,
            target,
        } => {
            let v = if target.connection_string.is_some() {
                api(
                    &target,
                    "PUT",
                    &format!("hycos/{name}"),
                    Some(json!({"requires_client_authorization": !no_client_auth})),
                )
                .await?
            } else {
                offline(&target, |o| {
                    o.create_hc(&name, !no_client_auth)
                        .map(|v| (json!(v), true))
                })?
            };
            print(&v);
        }
        HycoCmd::List { target } => {
            let v = if target.connection_string.is_some() {
                api(&target, "GET", "hycos", None).await?
            } else {
                offline(&target, |o| o.list_hcs().map(|v| (json!(v), false)))?
            };
            print(&v);
        }
        HycoCmd::Show { name, target } => {
            let v = if target.connection_string.is_some() {
                api(&target, "GET", &format!("hycos/{name}"), None).await?
            } else {
                offline(&target, |o| {
                    o.list_hcs().and_then(|v| {
                        v.into_iter()
                            .find(|h| h.name.eq_ignore_ascii_case(&name))
                            .map(|h| (json!(h), false))
                            .ok_or(hyrelay_relay::mgmt::OpError {
                                status: 404,
                                message: format!("hybrid connection '{name}' does not exist"),
                            })
                    })
                })?
            };
            print(&v);
        }
        HycoCmd::Delete { name, target } => {
            if target.connection_string.is_some() {
                api(&target, "DELETE", &format!("hycos/{name}"), None).await?;
            } else {
                offline(&target, |o| o.delete_hc(&name).map(|_| ((), true)))?;
            }
            println!("deleted hybrid connection '{name}'");
        }
    }
    Ok(())
}

pub async fn wcfrelay(c: WcfRelayCmd) -> Result<()> {
    let online = |t: &Target| t.connection_string.is_some();
    match c {
        WcfRelayCmd::Create {
            name,
            relay_type,
            no_client_auth,
            target,
        } => {
            let v = if online(&target) {
                let body = json!({"relay_type": relay_type, "requires_client_authorization": !no_client_auth});
                api(&target, "PUT", &format!("wcfrelays/{name}"), Some(body)).await?
            } else {
                offline(&target, |o| {
                    o.create_wcf_relay(&name, &relay_type, !no_client_auth)
                        .map(|v| (json!(v), true))
                })?
            };
            print(&v);
        }
        WcfRelayCmd::List { target } => {
            let v = if online(&target) {
                api(&target, "GET", "wcfrelays", None).await?
            } else {
                offline(&target, |o| o.list_wcf_relays().map(|v| (json!(v), false)))?
            };
            print(&v);
        }
        WcfRelayCmd::Show { name, target } => {
            let v = if online(&target) {
                api(&target, "GET", &format!("wcfrelays/{name}"), None).await?
            } else {
                offline(&target, |o| {
                    o.list_wcf_relays().and_then(|v| {
                        v.into_iter()
                            .find(|w| w.name.eq_ignore_ascii_case(&name))
                            .map(|w| (json!(w), false))
                            .ok_or(hyrelay_relay::mgmt::OpError {
                                status: 404,
                                message: format!("WCF relay '{name}' does not exist"),
                            })
                    })
                })?
            };
            print(&v);
        }
        WcfRelayCmd::Delete { name, target } => {
            if online(&target) {
                api(&target, "DELETE", &format!("wcfrelays/{name}"), None).await?;
            } else {
                offline(&target, |o| o.delete_wcf_relay(&name).map(|_| ((), true)))?;
            }
            println!("deleted WCF relay '{name}'");
        }
    }
    Ok(())
}

fn strip_keys(mut v: Value) -> Value {
    if let Value::Array(a) = &mut v {
        for p in a {
            if let Value::Object(o) = p {
                o.remove("primary_key");
                o.remove("secondary_key");
            }
        }
    }
    v
}

pub async fn policy(c: PolicyCmd) -> Result<()> {
    match c {
        PolicyCmd::Create {
            name,
            rights,
            hyco,
            target,
        } => {
            let r = Rights::parse_list(&rights).map_err(|e| anyhow!(e))?;
            let v = if target.connection_string.is_some() {
                api(
                    &target,
                    "PUT",
                    &format!("policies/{name}{}", hyco_q(&hyco)),
                    Some(json!({"rights": r.names()})),
                )
                .await?
            } else {
                offline(&target, |o| {
                    o.create_policy(&name, r, hyco.as_deref())
                        .map(|r| (policy_json(&r), true))
                })?
            };
            print(&v);
        }
        PolicyCmd::List { hyco, target } => {
            let v = if target.connection_string.is_some() {
                api(&target, "GET", &format!("policies{}", hyco_q(&hyco)), None).await?
            } else {
                offline(&target, |o| {
                    o.list_policies(hyco.as_deref())
                        .map(|v| (json!(v.iter().map(policy_json).collect::<Vec<_>>()), false))
                })?
            };
            print(&strip_keys(v));
        }
        PolicyCmd::Delete { name, hyco, target } => {
            if target.connection_string.is_some() {
                api(
                    &target,
                    "DELETE",
                    &format!("policies/{name}{}", hyco_q(&hyco)),
                    None,
                )
                .await?;
            } else {
                offline(&target, |o| {
                    o.delete_policy(&name, hyco.as_deref()).map(|_| ((), true))
                })?;
            }
            println!("deleted policy '{name}'");
        }
    }
    Ok(())
}

pub async fn keys(c: KeysCmd) -> Result<()> {
    match c {
        KeysCmd::Show {
            policy,
            hyco,
            target,
        } => {
            let v = if target.connection_string.is_some() {
                api(
                    &target,
                    "GET",
                    &format!("keys/{policy}{}", hyco_q(&hyco)),
                    None,
                )
                .await?
            } else {
                offline(&target, |o| {
                    o.policy(&policy, hyco.as_deref())
                        .map(|r| (policy_json(&r), false))
                })?
            };
            print(&v);
        }
        KeysCmd::Renew {
            policy,
            primary: _,
            secondary,
            hyco,
            target,
        } => {
            let v = if target.connection_string.is_some() {
                let which = if secondary { "secondary" } else { "primary" };
                let sep = if hyco.is_some() { "&" } else { "?" };
                api(
                    &target,
                    "POST",
                    &format!("keys/{policy}/renew{}{sep}which={which}", hyco_q(&hyco)),
                    None,
                )
                .await?
            } else {
                offline(&target, |o| {
                    o.renew_key(&policy, hyco.as_deref(), secondary)
                        .map(|r| (policy_json(&r), true))
                })?
            };
            print(&v);
        }
    }
    Ok(())
}

pub async fn connection_string(a: ConnStrArgs) -> Result<()> {
    let rule = if a.target.connection_string.is_some() {
        let v = api(
            &a.target,
            "GET",
            &format!("keys/{}{}", a.policy, hyco_q(&a.hyco)),
            None,
        )
        .await?;
        let cs = ConnectionString::parse(a.target.connection_string.as_deref().unwrap_or(""))?;
        let key = v
            .get("primary_key")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        println!(
            "Endpoint=sb://{}/;SharedAccessKeyName={};SharedAccessKey={key}{}",
            cs.authority(),
            a.policy,
            a.hyco
                .map(|h| format!(";EntityPath={h}"))
                .unwrap_or_default()
        );
        return Ok(());
    } else {
        let hyco = a.hyco.clone();
        let policy = a.policy.clone();
        offline(&a.target, move |o| {
            let r = match &hyco {
                Some(h) => o
                    .policy(&policy, Some(h))
                    .or_else(|_| o.policy(&policy, None)),
                None => o.policy(&policy, None),
            }?;
            Ok((r, false))
        })?
    };
    println!(
        "Endpoint=sb://{}/;SharedAccessKeyName={};SharedAccessKey={}{}",
        a.endpoint,
        rule.name,
        rule.primary_key,
        a.hyco
            .map(|h| format!(";EntityPath={h}"))
            .unwrap_or_default()
    );
    Ok(())
}

pub fn token(a: TokenArgs) -> Result<()> {
    let cs = ConnectionString::parse(&a.connection_string)?;
    let (name, key) = match (&cs.key_name, &cs.key) {
        (Some(n), Some(k)) => (n, k),
        _ => bail!("the connection string needs SharedAccessKeyName and SharedAccessKey"),
    };
    let ttl = humantime::parse_duration(&a.ttl)
        .with_context(|| format!("--ttl '{}' is not a duration like 1h or 30m", a.ttl))?;
    let entity = a.hyco.or(cs.entity_path.clone());
    let resource = match entity {
        Some(e) => format!("http://{}/{}", cs.host, e.trim_matches('/')),
        None => format!("http://{}/", cs.host),
    };
    let expiry = hyrelay_relay::core::now_secs() + ttl.as_secs();
    println!("{}", sas::sign(&resource, name, key, expiry));
    Ok(())
}
