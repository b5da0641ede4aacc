//! azbridge's configuration file (YAML), read by `hyrelay bridge -f FILE`.
//!
//! Keys are azbridge's, as users already have them: top level `AzureRelayConnectionString`,
//! `AzureRelayEndpoint`, `AzureRelaySharedAccessKeyName`, `AzureRelaySharedAccessKey`,
//! `AzureRelaySharedAccessSignature`, `BindAddress`, `GatewayPorts`, `KeepAliveInterval`,
//! `LocalForward`, `RemoteForward` (plus `LogLevel`, `ConnectionAttempts`, `ConnectTimeout`,
//! `ExitOnForwardFailure`, `AddressFamily`, `ClearAllForwardings`, accepted and ignored).
//! Unknown keys are refused so a typo does not silently drop a forward.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

/// A port given as a number or as text with a `U` suffix for UDP.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum PortValue {
    /// 8080
    Number(u16),
    /// "8080" or "53U"
    Text(String),
}

impl PortValue {
    fn text(&self) -> String {
        match self {
            PortValue::Number(n) => n.to_string(),
            PortValue::Text(s) => s.clone(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct LocalBinding {
    pub bind_address: Option<String>,
    pub bind_port: Option<PortValue>,
    pub bind_local_socket: Option<String>,
    pub port_name: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct LocalForward {
    pub relay_name: String,
    pub connection_string: Option<String>,
    #[serde(default)]
    pub no_authentication: bool,
    pub bind_address: Option<String>,
    pub bind_port: Option<PortValue>,
    pub bind_local_socket: Option<String>,
    pub port_name: Option<String>,
    #[serde(default)]
    pub bindings: Vec<LocalBinding>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct RemoteBinding {
    pub host: Option<String>,
    pub host_port: Option<PortValue>,
    pub local_socket: Option<String>,
    pub port_name: Option<String>,
    #[serde(default)]
    pub http: bool,
    #[serde(default)]
    pub insecure: bool,
    pub path: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct RemoteForward {
    pub relay_name: String,
    pub connection_string: Option<String>,
    pub host: Option<String>,
    pub host_port: Option<PortValue>,
    pub local_socket: Option<String>,
    pub port_name: Option<String>,
    #[serde(default)]
    pub http: bool,
    #[serde(default)]
    pub insecure: bool,
    pub path: Option<String>,
    #[serde(default)]
    pub bindings: Vec<RemoteBinding>,
}

/// hyrelay extension: one WCF endpoint of the WCF bridge.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct WcfEndpoint {
    /// The hybrid connection.
    pub relay_name: String,
    /// The net.tcp service: exposed as `RelayName` (no `Local`), or reached directly by a
    /// `Local` endpoint in `Mode: direct`.
    pub service: Option<String>,
    /// A local net.tcp address for legacy clients (`net.tcp://127.0.0.1:9000/CreditCheck`).
    pub local: Option<String>,
    /// `relayed` (default) or `direct` (a `Local` endpoint proxies straight to `Service`).
    pub mode: Option<String>,
    /// Restrict the HTTP SOAP front of a `Service` endpoint to SOAP `1.1` or `1.2`
    /// (default: both). YAML reads an unquoted 1.1 as a number; both forms are taken.
    pub soap: Option<SoapValue>,
}

/// `Soap: 1.1` (a YAML number) or `Soap: "1.1"`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum SoapValue {
    /// 1.1
    Number(f64),
    /// "1.1"
    Text(String),
}

impl Eq for SoapValue {}

impl SoapValue {
    /// The version as text.
    pub fn text(&self) -> String {
        match self {
            SoapValue::Number(n) => format!("{n:.1}"),
            SoapValue::Text(s) => s.clone(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct BridgeFile {
    /// hyrelay extension: the WCF bridge's endpoints.
    #[serde(default)]
    pub wcf_endpoints: Vec<WcfEndpoint>,
    /// hyrelay extension: where `hyrelay bridge status` asks (HTTP, JSON).
    pub status_address: Option<String>,
    pub azure_relay_connection_string: Option<String>,
    pub azure_relay_endpoint: Option<String>,
    pub azure_relay_shared_access_key_name: Option<String>,
    pub azure_relay_shared_access_key: Option<String>,
    pub azure_relay_shared_access_signature: Option<String>,
    pub bind_address: Option<String>,
    #[serde(default)]
    pub gateway_ports: bool,
    pub keep_alive_interval: Option<u64>,
    #[serde(default)]
    pub local_forward: Vec<LocalForward>,
    #[serde(default)]
    pub remote_forward: Vec<RemoteForward>,
    // Accepted for compatibility, no effect here (use HYRELAY_LOG for logging).
    #[allow(dead_code)]
    pub log_level: Option<String>,
    #[allow(dead_code)]
    pub connection_attempts: Option<u32>,
    #[allow(dead_code)]
    pub connect_timeout: Option<u32>,
    #[allow(dead_code)]
    pub exit_on_forward_failure: Option<bool>,
    #[allow(dead_code)]
    pub address_family: Option<String>,
    #[allow(dead_code)]
    pub clear_all_forwardings: Option<bool>,
}

/// One forwarding rule in command-line form, with its own connection string if it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Spec {
    /// `-L` spec.
    Local {
        spec: String,
        connection_string: Option<String>,
        no_auth: bool,
    },
    /// `-T` spec.
    Remote {
        spec: String,
        connection_string: Option<String>,
    },
    /// `-H` spec.
    Http {
        spec: String,
        connection_string: Option<String>,
    },
}

impl BridgeFile {
    /// Reads and validates a file.
    pub fn load(path: &Path) -> Result<BridgeFile> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        serde_yaml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }

    /// The rules as -L/-T/-H specs.
    pub fn specs(&self) -> Result<Vec<Spec>> {
        let mut out = Vec::new();
        for l in &self.local_forward {
            let mut parts = Vec::new();
            let single = LocalBinding {
                bind_address: l.bind_address.clone(),
                bind_port: l.bind_port.clone(),
                bind_local_socket: l.bind_local_socket.clone(),
                port_name: l.port_name.clone(),
            };
            let bindings: Vec<&LocalBinding> = if l.bindings.is_empty() {
                vec![&single]
            } else {
                l.bindings.iter().collect()
            };
            for b in bindings {
                let name = b
                    .port_name
                    .as_ref()
                    .map(|n| format!("/{n}"))
                    .unwrap_or_default();
                match (&b.bind_local_socket, &b.bind_port) {
                    (Some(sock), _) => parts.push(format!("{sock}{name}")),
                    (None, Some(p)) => {
                        // The top-level BindAddress is azbridge's -b (the source address of
                        // outbound connections), not a listen address.
                        parts.push(match b.bind_address.clone() {
                            Some(a) => format!("{a}:{}{name}", p.text()),
                            None => format!("{}{name}", p.text()),
                        })
                    }
                    (None, None) => bail!(
                        "LocalForward '{}': a binding needs BindPort or BindLocalSocket",
                        l.relay_name
                    ),
                }
            }
            out.push(Spec::Local {
                spec: format!("{}:{}", parts.join(";"), l.relay_name),
                connection_string: l.connection_string.clone(),
                no_auth: l.no_authentication,
            });
        }
        for r in &self.remote_forward {
            let single = RemoteBinding {
                host: r.host.clone(),
                host_port: r.host_port.clone(),
                local_socket: r.local_socket.clone(),
                port_name: r.port_name.clone(),
                http: r.http,
                insecure: r.insecure,
                path: r.path.clone(),
            };
            // azbridge writes `-H` in YAML as a forward with `Http: true` and a binding whose
            // PortName is http/https: forward-level Http, Insecure, Path and Host hold for
            // every binding that does not set its own.
            let inherited: Vec<RemoteBinding> = r
                .bindings
                .iter()
                .map(|b| RemoteBinding {
                    http: b.http || r.http,
                    insecure: b.insecure || r.insecure,
                    path: b.path.clone().or_else(|| r.path.clone()),
                    host: b.host.clone().or_else(|| r.host.clone()),
                    ..b.clone()
                })
                .collect();
            let bindings: Vec<&RemoteBinding> = if r.bindings.is_empty() {
                vec![&single]
            } else {
                inherited.iter().collect()
            };
            let mut parts = Vec::new();
            for b in bindings {
                let port = b.host_port.as_ref().map(PortValue::text);
                if b.insecure {
                    bail!("RemoteForward '{}': Insecure (skipping TLS checks) is not supported; pass --ca with the server's CA instead", r.relay_name);
                }
                if b.http {
                    let scheme = b.port_name.as_deref().unwrap_or("http");
                    if scheme != "http" && scheme != "https" {
                        bail!(
                            "RemoteForward '{}': with Http: true, PortName must be http or https",
                            r.relay_name
                        );
                    }
                    let host = b.host.clone().unwrap_or_else(|| "127.0.0.1".into());
                    let path = b
                        .path
                        .as_ref()
                        .map(|p| format!("/{}", p.trim_matches('/')))
                        .unwrap_or_default();
                    let port = port.with_context(|| {
                        format!("RemoteForward '{}': Http needs HostPort", r.relay_name)
                    })?;
                    out.push(Spec::Http {
                        spec: format!("{}:{scheme}/{host}{path}:{port}", r.relay_name),
                        connection_string: r.connection_string.clone(),
                    });
                    continue;
                }
                let name = b
                    .port_name
                    .as_ref()
                    .map(|n| format!("{n}/"))
                    .unwrap_or_default();
                match (&b.local_socket, port) {
                    (Some(sock), _) => parts.push(format!("{name}{sock}")),
                    (None, Some(p)) => parts.push(format!(
                        "{name}{}:{p}",
                        b.host.clone().unwrap_or_else(|| "127.0.0.1".into())
                    )),
                    (None, None) => bail!(
                        "RemoteForward '{}': a binding needs HostPort or LocalSocket",
                        r.relay_name
                    ),
                }
            }
            if !parts.is_empty() {
                out.push(Spec::Remote {
                    spec: format!("{}:{}", r.relay_name, parts.join(";")),
                    connection_string: r.connection_string.clone(),
                });
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(rel: &str) -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fixtures/config")
            .join(rel)
    }

    #[test]
    fn wcf_endpoints_fixture() {
        let f = BridgeFile::load(&fixture("valid/bridge-wcf.yml")).unwrap();
        assert_eq!(f.status_address.as_deref(), Some("127.0.0.1:9899"));
        let specs = crate::wcf::collect_specs(&[], &[], &f.wcf_endpoints, false).unwrap();
        assert_eq!(specs.len(), 3);
        let modes: Vec<String> = specs
            .iter()
            .map(|s| match s {
                crate::wcf::EndpointSpec::Local {
                    listen,
                    path,
                    route,
                } => format!(
                    "{listen}{path} {}",
                    match route {
                        crate::wcf::Route::Relayed { hyco } => format!("relayed {hyco}"),
                        crate::wcf::Route::Direct { service } =>
                            format!("direct {}", service.address),
                    }
                ),
                crate::wcf::EndpointSpec::Service { svc, soap } => {
                    format!("service {} {} {soap:?}", svc.hyco, svc.dial)
                }
            })
            .collect();
        assert_eq!(
            modes,
            [
                "127.0.0.1:9000/creditcheck relayed credit-check",
                "127.0.0.1:9000/statements direct net.tcp://creditsrv:8001/Statements",
                "service credit-check creditsrv:8000 Some(Soap11)",
            ]
        );
    }

    #[test]
    fn wcf_endpoints_invalid_fixtures_say_why() {
        let err = |name: &str| -> String {
            match BridgeFile::load(&fixture(name)) {
                Err(e) => format!("{e:#}"),
                Ok(f) => match crate::wcf::collect_specs(&[], &[], &f.wcf_endpoints, false) {
                    Err(e) => format!("{e:#}"),
                    Ok(_) => panic!("{name} was accepted"),
                },
            }
        };
        assert!(err("invalid/bridge-wcf-bad-mode.yml").contains("Mode must be relayed or direct"));
        assert!(err("invalid/bridge-wcf-unknown-key.yml").contains("Locl"));
        assert!(err("invalid/bridge-wcf-direct-without-service.yml")
            .contains("needs the Service address"));
    }

    #[test]
    fn azbridge_yaml() {
        let y = r#"
AzureRelayConnectionString: "Endpoint=sb://127.0.0.1:9080/;SharedAccessKeyName=R;SharedAccessKey=k="
KeepAliveInterval: 30
LogLevel: INFO
BindAddress: 127.0.0.5
LocalForward:
  - RelayName: db
    Bindings:
      - BindAddress: 127.0.0.8
        BindPort: 16161
        PortName: sql1
      - BindAddress: 127.0.0.9
        BindPort: "53U"
        PortName: dns
  - RelayName: single
    BindPort: 8888
RemoteForward:
  - RelayName: db
    Bindings:
      - PortName: sql1
        Host: sql1.corp
        HostPort: 16161
      - PortName: dns
        HostPort: 53U
  - RelayName: web
    Http: true
    PortName: https
    Host: localhost
    Path: api
    HostPort: 8443
"#;
        let f: BridgeFile = serde_yaml::from_str(y).unwrap();
        let s = f.specs().unwrap();
        assert_eq!(
            s[0],
            Spec::Local {
                spec: "127.0.0.8:16161/sql1;127.0.0.9:53U/dns:db".into(),
                connection_string: None,
                no_auth: false
            }
        );
        // The top-level BindAddress is -b (outbound source address), not a listen address.
        assert_eq!(f.bind_address.as_deref(), Some("127.0.0.5"));
        assert_eq!(
            s[1],
            Spec::Local {
                spec: "8888:single".into(),
                connection_string: None,
                no_auth: false
            }
        );
        assert_eq!(
            s[2],
            Spec::Remote {
                spec: "db:sql1/sql1.corp:16161;dns/127.0.0.1:53U".into(),
                connection_string: None
            }
        );
        assert_eq!(
            s[3],
            Spec::Http {
                spec: "web:https/localhost/api:8443".into(),
                connection_string: None
            }
        );
    }

    #[test]
    fn azbridge_http_forward_in_yaml_is_http_plus_a_binding() {
        // The form azbridge's docs give for -H in a config file (its issue #83).
        let y = r#"
RemoteForward:
  - RelayName: web
    Http: true
    Bindings:
      - PortName: https
        Host: localhost
        HostPort: 8443
  - RelayName: plain
    Http: true
    Host: intranet
    Path: app
    Bindings:
      - PortName: http
        HostPort: 8080
"#;
        let f: BridgeFile = serde_yaml::from_str(y).unwrap();
        assert_eq!(
            f.specs().unwrap(),
            vec![
                Spec::Http {
                    spec: "web:https/localhost:8443".into(),
                    connection_string: None
                },
                Spec::Http {
                    spec: "plain:http/intranet/app:8080".into(),
                    connection_string: None
                },
            ]
        );
        // Http with a binding whose PortName is not http/https is refused, not made TCP.
        let bad = y.replace("PortName: https", "PortName: sql");
        let e = serde_yaml::from_str::<BridgeFile>(&bad)
            .unwrap()
            .specs()
            .unwrap_err()
            .to_string();
        assert!(e.contains("PortName must be http or https"), "{e}");
    }

    #[test]
    fn typos_are_refused() {
        let e = serde_yaml::from_str::<BridgeFile>("LocalForwards: []\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("LocalForwards"), "{e}");
        let e =
            serde_yaml::from_str::<BridgeFile>("LocalForward:\n  - RelayName: a\n    BindPrt: 1\n")
                .unwrap_err()
                .to_string();
        assert!(e.contains("BindPrt"), "{e}");
    }
}
